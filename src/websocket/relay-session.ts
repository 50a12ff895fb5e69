import type { Logger } from 'pino'
import type { Instance } from '../routing/instance.js'
import type { ConnectionOwner, Handshake, WsConnection } from './connection.js'
import type { RelaySide, SideOwner } from './relay-side.js'
import type { Attempt, RelayOutcome } from './upstream-connect.js'

export interface RelayHandshake extends Handshake {
  /** The request ID the first upstream handshake carried; a handoff's carries it again. */
  readonly requestId: string
  /** The subprotocol both sides agreed on ('' for none); a new upstream must agree too. */
  readonly protocol: string
}

/** The gateway as a relay session needs it. Read per use: a reload may change the values. */
export interface RelayHost extends ConnectionOwner {
  readonly highWaterMark: number
  readonly handoffTimeoutMs: number
  /** websocket.onDrain */
  readonly drainPolicy: 'handoff' | 'close'
  readonly log: Logger
  /** The instance current routing gives this connection, avoiding `failed`; undefined if none is usable. */
  route(c: WsConnection, failed: Instance | undefined): Instance | undefined
  /** Opens an upstream with the original handshake's headers and subprotocol. */
  open(s: RelaySession, to: Instance): Attempt<RelayOutcome>
  /** Whether routing wants it off its instance. */
  mustMove(c: WsConnection): boolean
}

type Side = RelaySide

// Why a side is not being read; it reads again only when no reason is left.
/** The peer's send buffer is above the high-water mark. */
const PEER_FULL = 1
/** (client) Messages held during a handoff are above the high-water mark. */
const HELD_FULL = 2
/** (upstream) An older upstream still delivers what it sent before the handoff. */
const ORDER = 4

/** Close codes an upstream sends when the application goes away or restarts (RFC 6455 7.4.1, IANA). */
const RESTARTING = new Set([1001, 1012])

/** WebSocket.OPEN */
const OPEN = 1

const TEXT = { binary: false }
const BINARY = { binary: true }
const RETRY_MS = 100

/**
 * One client WebSocket relayed message by message to an upstream WebSocket,
 * with ws on both sides (each side negotiates its own extensions).
 *
 * Backpressure: after forwarding a message, if the receiving side's send
 * buffer is above the high-water mark, the sending side is paused (its
 * socket is not read) until that buffer drains. So at most one socket read
 * or one message (maxPayload) beyond the mark is buffered per direction.
 *
 * Handoff: when routing moves the connection off its instance, the session
 * stops forwarding the client's messages and holds them (bounded the same
 * way), opens a new upstream by the current routing, then switches: held
 * messages go to the new upstream in order, and the old one is closed with
 * 1001. The switch happens between two whole messages, so no message is
 * split, lost or sent twice. Messages the old upstream sends until it closes
 * still reach the client; the new upstream is not read until the old one has
 * closed, so the client gets every reply in the order of its requests.
 */
export class RelaySession implements WsConnection, SideOwner {
  idleTicks = 0
  #state: 'open' | 'switching' | 'closing' | 'closed' = 'open'
  /** Oldest first. The last takes the client's messages; earlier ones are retiring. (Sized for one: most never hand off.) */
  readonly #upstreams: Side[]
  readonly #client: Side
  /** Messages held during a handoff: data, binary, data, binary, ... (none kept while idle) */
  #held: (Buffer | boolean)[] | undefined
  #heldBytes = 0
  #deadline: NodeJS.Timeout | undefined
  #retry: NodeJS.Timeout | undefined
  #attempt: Attempt<RelayOutcome> | undefined
  #lastFailed: Instance | undefined

  constructor(
    readonly host: RelayHost,
    client: Side,
    upstream: Side,
    public instance: Instance,
    readonly handshake: RelayHandshake,
  ) {
    this.#client = adopt(client, this, true)
    this.#upstreams = [adopt(upstream, this, false)]
  }

  /** The client's address (node caches it on the socket: still there once it has closed). */
  get clientAddress(): string | undefined {
    return this.#client._socket.remoteAddress
  }

  get idleable(): boolean {
    return this.#state === 'open'
  }

  get buffered(): number {
    let n = this.#client.bufferedAmount + this.#heldBytes
    for (const up of this.#upstreams) n += up.bufferedAmount
    return n
  }

  // ---- events (from the sides, see RelaySide) ----

  fromClient(data: Buffer, binary: boolean): void {
    this.idleTicks = 0
    if (this.#state === 'open') {
      const up = this.#upstreams[this.#upstreams.length - 1]!
      if (up.readyState === OPEN) {
        forward(up, data, binary)
        if (up.bufferedAmount > this.host.highWaterMark && this.#pause(this.#client, PEER_FULL)) watchDrain(up)
        return
      }
      // The upstream has begun to close: kept for the handoff that may follow (dropped if the client is closed).
    }
    if (this.#state === 'open' || this.#state === 'switching') {
      ;(this.#held ??= []).push(data, binary)
      this.#heldBytes += data.length
      if (this.#heldBytes > this.host.highWaterMark) this.#pause(this.#client, HELD_FULL)
    }
  }

  fromUpstream(data: Buffer, binary: boolean): void {
    this.idleTicks = 0
    if (this.#state === 'closed') return
    const client = this.#client
    forward(client, data, binary)
    if (client.bufferedAmount > this.host.highWaterMark) {
      let newly = false
      for (const up of this.#upstreams) newly = this.#pause(up, PEER_FULL) || newly
      if (newly) watchDrain(client)
    }
  }

  clientPing(data: Buffer): void {
    this.idleTicks = 0
    // During a handoff there is no upstream to ask: the proxy answers itself.
    if (this.#state === 'open') this.#upstreams[this.#upstreams.length - 1]!.ping(data)
    else if (this.#state === 'switching') this.#client.pong(data)
  }

  clientPong(data: Buffer): void {
    this.idleTicks = 0
    if (this.#state === 'open') this.#upstreams[this.#upstreams.length - 1]!.pong(data)
  }

  upstreamPing(data: Buffer): void {
    this.idleTicks = 0
    if (this.#state !== 'closed') this.#client.ping(data)
  }

  upstreamPong(data: Buffer): void {
    this.idleTicks = 0
    if (this.#state !== 'closed') this.#client.pong(data)
  }

  /** A side's send buffer drained: read again the side(s) that were waiting on it. */
  drained(side: Side): void {
    if (side.bufferedAmount > this.host.highWaterMark) {
      watchDrain(side)
      return
    }
    if (side === this.#client) for (const up of this.#upstreams) this.#resume(up, PEER_FULL)
    else if (side === this.#upstreams[this.#upstreams.length - 1]) this.#resume(this.#client, PEER_FULL)
  }

  clientClosed(code: number, reason: Buffer): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#stopHandoff()
    const last = this.#upstreams[this.#upstreams.length - 1]
    if (last !== undefined) closeLike(last, code, reason, this.#client, 1001)
    this.host.ended(this)
  }

  upstreamClosed(up: Side, code: number, reason: Buffer): void {
    const ups = this.#upstreams
    const i = ups.indexOf(up)
    if (i < 0) return
    const wasLast = i === ups.length - 1
    ups.splice(i, 1)
    if (i === 0 && ups.length > 0) this.#resume(ups[0]!, ORDER)
    // While switching the client stays: the handoff brings it a new upstream.
    if (!wasLast || this.#state !== 'open') return
    if (RESTARTING.has(code) && this.host.drainPolicy === 'handoff') {
      // The application is going away or restarting, not ending this conversation: like a
      // drain, the client keeps its socket and gets another upstream (the same one once it is back).
      this.host.log.info({ instance: this.instance.url, code }, 'websocket upstream went away: handing the client off')
      this.#startHandoff(this.instance)
      return
    }
    this.#state = 'closing'
    closeLike(this.#client, code, reason, up, 1014)
  }

  // ---- asked by the gateway ----

  moveOff(): void {
    if (this.#state !== 'open') return
    if (this.host.drainPolicy === 'close') {
      this.shut(1012, 'instance draining')
      return
    }
    this.#startHandoff(undefined)
  }

  shut(code: number, reason: string): void {
    if (this.#state === 'closing' || this.#state === 'closed') return
    this.#state = 'closing'
    this.#stopHandoff()
    // Stop holding anything back: the close frames must be read.
    this.#resume(this.#client, PEER_FULL | HELD_FULL)
    this.#client.close(code, reason)
    for (const up of this.#upstreams) {
      this.#resume(up, PEER_FULL | ORDER)
      up.close(1001, reason)
    }
  }

  kill(): void {
    this.#stopHandoff()
    this.#client.terminate()
    for (const up of this.#upstreams) up.terminate()
  }

  // ---- handoff ----

  /** `avoid`: an instance to pick only when there is no other (the one that just went away). */
  #startHandoff(avoid: Instance | undefined): void {
    this.#state = 'switching'
    this.#lastFailed = avoid
    this.#deadline = setTimeout(() => this.#handoffFailed(), this.host.handoffTimeoutMs).unref()
    this.#tryHandoff()
  }

  #tryHandoff(): void {
    this.#retry = undefined
    if (this.#state !== 'switching') return
    const failed = this.#lastFailed
    // Another instance if there is one; else the one that failed, which may be back by now.
    const to = this.host.route(this, failed) ?? (failed === undefined ? undefined : this.host.route(this, undefined))
    if (to === undefined) {
      this.#retry = setTimeout(() => this.#tryHandoff(), RETRY_MS).unref()
      return
    }
    const current = this.#upstreams[this.#upstreams.length - 1]
    if (to === this.instance && current !== undefined && current.readyState === 1) {
      // Routing changed its mind (the instance is wanted again): carry on where it was.
      this.#state = 'open'
      clearTimeout(this.#deadline)
      this.#flushHeld(current)
      return
    }
    const attempt = this.host.open(this, to)
    this.#attempt = attempt
    void attempt.done.then((o) => this.#opened(attempt, to, o))
  }

  #opened(attempt: Attempt<RelayOutcome>, to: Instance, o: RelayOutcome): void {
    if (this.#attempt !== attempt || this.#state !== 'switching') {
      if (o.kind !== 'failed') o.ws.terminate()
      return
    }
    this.#attempt = undefined
    if (o.kind === 'open' && o.protocol === this.handshake.protocol) {
      this.#switchTo(to, o.ws)
      return
    }
    if (o.kind !== 'failed') o.ws.terminate()
    const why =
      o.kind === 'failed' ? o.error.message : o.kind === 'refused' ? `refused ${o.res.statusCode}` : 'subprotocol'
    this.host.log.debug({ instance: to.url, why }, 'websocket handoff attempt failed; trying again')
    this.#lastFailed = to
    this.#retry = setTimeout(() => this.#tryHandoff(), RETRY_MS).unref()
  }

  #switchTo(to: Instance, ws: Side): void {
    clearTimeout(this.#deadline)
    this.#deadline = undefined
    const from = this.instance
    this.instance = to
    this.host.moved(this, from, to)
    const previous = this.#upstreams[this.#upstreams.length - 1]
    const up = adopt(ws, this, false)
    this.#upstreams.push(up)
    // The new upstream waits until every older one has delivered its last message.
    if (this.#upstreams.length > 1) this.#pause(up, ORDER)
    previous?.close(1001, 'handoff')
    this.#state = 'open'
    this.#flushHeld(up)
    // It may have become unwanted while it was being opened.
    if (this.host.mustMove(this)) this.moveOff()
  }

  #flushHeld(up: Side): void {
    const held = this.#held ?? []
    for (let i = 0; i < held.length; i += 2) forward(up, held[i] as Buffer, held[i + 1] as boolean)
    this.#held = undefined
    this.#heldBytes = 0
    this.#resume(this.#client, HELD_FULL | PEER_FULL)
    if (up.bufferedAmount > this.host.highWaterMark && this.#pause(this.#client, PEER_FULL)) watchDrain(up)
  }

  #handoffFailed(): void {
    this.#deadline = undefined
    if (this.#state !== 'switching') return
    this.host.log.warn(
      { instance: this.instance.url, timeoutMs: this.host.handoffTimeoutMs },
      'websocket handoff found no upstream in time: closing the client with 1012',
    )
    this.shut(1012, 'handoff failed')
  }

  #stopHandoff(): void {
    clearTimeout(this.#deadline)
    clearTimeout(this.#retry)
    this.#deadline = this.#retry = undefined
    this.#attempt?.abort()
    this.#attempt = undefined
    this.#held = undefined
    this.#heldBytes = 0
  }

  // ---- plumbing ----

  /** Adds a reason not to read `side`; true if it is newly set. */
  #pause(side: Side, reason: number): boolean {
    const before = side.paused
    if ((before & reason) === reason) return false
    side.paused = before | reason
    if (before === 0) side.pause()
    return true
  }

  #resume(side: Side, reasons: number): void {
    const before = side.paused
    const after = before & ~reasons
    if (after === before) return
    side.paused = after
    if (after === 0) side.resume()
  }
}

/** From now on ws's events on `side` go to `s`; the listeners of its handshake are dropped. */
function adopt(side: Side, s: RelaySession, isClient: boolean): Side {
  side.dropListeners()
  side.owner = s
  side.isClient = isClient
  return side
}

/**
 * Sends one message as received (the Buffer ws handed over, with its type:
 * never decoded to a string). ws writes every frame with its own syscall;
 * the messages of one socket read arrive in one tick (ws emits them
 * synchronously), so the peer's socket stays corked until the tick ends and
 * they leave in one writev, as the byte tunnel's chunks do.
 */
function forward(side: Side, data: Buffer, binary: boolean): void {
  if (!side.corked) {
    side.corked = true
    side._socket.cork()
    process.nextTick(uncork, side)
  }
  side.send(data, binary ? BINARY : TEXT)
}

function uncork(side: Side): void {
  side.corked = false
  side._socket.uncork()
}

/**
 * Waits for `side`'s socket to drain; when the buffer is in ws's sender instead (compression), polls.
 * Only under backpressure, so the closure costs an idle connection nothing.
 */
function watchDrain(side: Side): void {
  const socket = side._socket
  if (socket.writableNeedDrain) socket.once('drain', () => side.owner?.drained(side))
  else setTimeout(onDrainPoll, 10, side).unref()
}

function onDrainPoll(side: Side): void {
  if (side.readyState <= 2) side.owner?.drained(side)
}

/**
 * Close codes pass through as they are; 1005 (no code) becomes a close frame
 * without one, and 1006 (the peer vanished without a close frame) makes the
 * proxy vanish toward the other side too, so each end sees what it would
 * have seen without the proxy. The exception: when the proxy itself closed
 * `from` for a protocol error (a message over maxPayload, invalid UTF-8, a
 * bad frame), the other side is told so with `faultCode` (1014 bad gateway
 * toward the client, 1001 toward the upstream) and ws's error code as reason.
 */
function closeLike(side: Side, code: number, reason: Buffer, from: Side, faultCode: number): void {
  const fault = from.fault
  if (code === 1006 && fault !== undefined) side.close(faultCode, fault)
  else if (code === 1005) side.close()
  else if (sendable(code)) side.close(code, reason)
  else side.terminate()
}

function sendable(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
  )
}
