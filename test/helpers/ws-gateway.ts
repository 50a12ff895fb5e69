import type { Sluice } from '../../src/lifecycle/sluice.js'
import { WebSocketGateway } from '../../src/websocket/gateway.js'

/** The WebSocket gateway attached to a running proxy. */
export function gatewayOf(p: { sluice: Sluice }): WebSocketGateway {
  const g = p.sluice.hooks.find((h) => h instanceof WebSocketGateway)
  if (g === undefined) throw new Error('no WebSocket gateway attached')
  return g as WebSocketGateway
}

/** Samples `read` every `everyMs` until stopped; `stop()` returns the largest value seen. */
export function sampleMax(read: () => number, everyMs = 10): { stop(): number } {
  let max = read()
  const timer = setInterval(() => {
    max = Math.max(max, read())
  }, everyMs)
  return {
    stop() {
      clearInterval(timer)
      return Math.max(max, read())
    },
  }
}
