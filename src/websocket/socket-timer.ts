import type { Socket } from 'node:net'

let kTimeout: symbol | null | undefined

/**
 * `socket.setTimeout(0)` clears the socket's idle timer but node keeps the
 * cleared Timeout (and its bound callback, about 200 bytes) on the socket
 * for good. A WebSocket lives long after the listener's HTTP idle timer has
 * been cleared for it, so the reference is dropped: null is the value node
 * itself gives a socket that never had a timer. When node's internals do not
 * look as expected this does nothing.
 */
export function dropClearedTimer(socket: Socket): void {
  if (socket.timeout !== 0) return
  if (kTimeout === undefined) {
    kTimeout = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'timeout') ?? null
  }
  if (kTimeout === null) return
  const timers = socket as unknown as Record<symbol, unknown>
  const timer = timers[kTimeout]
  if (timer !== null && typeof timer === 'object') timers[kTimeout] = null
}
