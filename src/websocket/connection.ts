import type { IncomingHttpHeaders } from 'node:http'
import type { Instance } from '../routing/instance.js'

/** What a proxied WebSocket keeps of its opening handshake, to route it again. */
export interface Handshake {
  readonly path: string
  /** The client's request headers, for overrides and the sticky key. */
  readonly request: IncomingHttpHeaders
  /** The sticky key hashed (NO_KEY without one). */
  readonly key: number
}

/**
 * One client WebSocket through the proxy, relayed or tunnelled, as the
 * gateway sees it: which instance is under it, and the three things the
 * gateway may ask of it.
 */
export interface WsConnection {
  readonly instance: Instance
  readonly handshake: Handshake
  /** Idle sweeps passed with no traffic; the connection zeroes it on every message or chunk. */
  idleTicks: number
  /** Bytes the proxy holds for it: send buffers of both sides and messages held during a handoff. */
  readonly buffered: number
  /** Whether it may be closed for idleness now (not in the middle of a handoff). */
  readonly idleable: boolean
  /** Routing no longer puts it on its instance: hand it off, or close the client with 1012. */
  moveOff(): void
  /** Closes the client with `code`, and the upstream with 1001 (going away). */
  shut(code: number, reason: string): void
  /** Destroys both sides at once (a graceful stop's deadline). */
  kill(): void
}

/** What a connection reports back to the gateway that tracks it. */
export interface ConnectionOwner {
  /** Counters and metrics: it moved to another instance. */
  moved(c: WsConnection, from: Instance, to: Instance): void
  /** It ended on both sides. */
  ended(c: WsConnection): void
}
