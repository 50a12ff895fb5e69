import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Instance } from '../routing/instance.js'
import type { ConnectionOwner, Handshake, WsConnection } from './connection.js'
import { closeFrame, FrameBoundary } from './frame-boundary.js'

const kTunnel = Symbol('sluice.tunnel')
type Tagged = Duplex & { [kTunnel]: TunnelConnection }

/**
 * Tunnel mode: after the upstream's 101 the bytes pass through untouched in
 * both directions (extensions and everything else negotiated end to end),
 * with socket backpressure and no per-message work. Two frame-boundary
 * trackers read only frame headers, so that the proxy can still end a
 * connection properly: a close frame injected between two frames, 1001 to
 * the upstream and the caller's code to the client. There is no handoff: a
 * connection whose instance drains is closed with 1012.
 */
/** One direction of the tunnel: its frames, and the close frame waiting for their next boundary. */
class Direction {
  readonly frames = new FrameBoundary()
  pendingClose: Buffer | undefined

  constructor(
    readonly from: Duplex,
    readonly to: Duplex,
  ) {}
}

export class TunnelConnection implements WsConnection {
  idleTicks = 0
  #state: 'open' | 'closing' | 'closed' = 'open'
  readonly #up: Direction
  readonly #down: Direction
  #closesSent = 0
  #open = 2
  #deadline: NodeJS.Timeout | undefined

  constructor(
    readonly owner: ConnectionOwner,
    readonly client: Duplex,
    readonly upstream: Socket,
    readonly instance: Instance,
    readonly handshake: Handshake,
    /** How long a proxy-initiated close may take before both sockets are destroyed. */
    readonly closeTimeoutMs: number,
  ) {
    this.#up = new Direction(client, upstream)
    this.#down = new Direction(upstream, client)
    for (const s of [client, upstream] as Tagged[]) {
      s[kTunnel] = this
      s.on('data', onData)
      s.on('end', onEnd)
      s.on('close', onClose)
      s.on('error', onError)
    }
    upstream.setNoDelay(true)
    ;(client as Socket).setNoDelay?.(true)
  }

  get buffered(): number {
    return this.client.writableLength + this.upstream.writableLength
  }

  get idleable(): boolean {
    return this.#state === 'open'
  }

  received(side: Duplex, chunk: Buffer): void {
    if (side === this.client) this.#pass(this.#up, this.#down, chunk)
    else this.#pass(this.#down, this.#up, chunk)
  }

  /** `side` can take more: read again the socket that writes to it. */
  drained(side: Duplex): void {
    ;(side === this.client ? this.upstream : this.client).resume()
  }

  ended(side: Duplex): void {
    // A half-close passes on; in 'closing' the proxy ends each side itself.
    if (this.#state === 'open') (side === this.client ? this.upstream : this.client).end()
  }

  closed(side: Duplex, hadError: boolean): void {
    const other = side === this.client ? this.upstream : this.client
    if (hadError) other.destroy()
    else other.end()
    if (--this.#open > 0) return
    this.#state = 'closed'
    clearTimeout(this.#deadline)
    this.owner.ended(this)
  }

  moveOff(): void {
    this.shut(1012, 'instance draining')
  }

  shut(code: number, reason: string): void {
    if (this.#state !== 'open') return
    this.#state = 'closing'
    this.#down.pendingClose = closeFrame(code, reason, false)
    this.#up.pendingClose = closeFrame(1001, reason, true)
    this.#deadline = setTimeout(() => this.kill(), this.closeTimeoutMs).unref()
    // Whatever was paused must flow now, up to the frame boundaries.
    this.client.resume()
    this.upstream.resume()
    for (const d of [this.#down, this.#up]) if (d.frames.atBoundary) this.#sendClose(d)
  }

  kill(): void {
    this.client.destroy()
    this.upstream.destroy()
  }

  #pass(d: Direction, back: Direction, chunk: Buffer): void {
    this.idleTicks = 0
    const frames = d.frames
    if (this.#state === 'open') {
      frames.consume(chunk)
      if (!d.to.write(chunk)) {
        d.from.pause()
        d.to.once('drain', onDrain)
      }
      return
    }
    if (this.#state !== 'closing') return
    if (d.pendingClose !== undefined) {
      // Up to the next frame boundary, then the close frame; later frames stay here.
      const n = frames.consume(chunk, 0, true)
      if (n > 0) d.to.write(chunk.subarray(0, n))
      if (!frames.atBoundary) return
      this.#sendClose(d)
      frames.consume(chunk, n)
    } else frames.consume(chunk)
    // The sender's own close frame, once the proxy's close has gone its way, ends it.
    if (frames.closeSeen && back.pendingClose === undefined) d.from.end()
  }

  #sendClose(d: Direction): void {
    d.to.write(d.pendingClose!)
    d.pendingClose = undefined
    if (++this.#closesSent < 2) return
    for (const x of [this.#up, this.#down]) if (x.frames.closeSeen) x.from.end()
  }
}

function onData(this: Tagged, chunk: Buffer): void {
  this[kTunnel].received(this, chunk)
}
function onDrain(this: Tagged): void {
  this[kTunnel].drained(this)
}
function onEnd(this: Tagged): void {
  this[kTunnel].ended(this)
}
function onClose(this: Tagged, hadError: boolean): void {
  this[kTunnel].closed(this, hadError)
}
function onError(): void {}
