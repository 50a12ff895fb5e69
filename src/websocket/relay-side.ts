import type { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import { shareListenerTable } from './shared-listeners.js'

/** What a relay side reports once a session owns it (the session's own methods). */
export interface SideOwner {
  fromClient(data: Buffer, binary: boolean): void
  fromUpstream(data: Buffer, binary: boolean): void
  clientPing(data: Buffer): void
  clientPong(data: Buffer): void
  upstreamPing(data: Buffer): void
  upstreamPong(data: Buffer): void
  clientClosed(code: number, reason: Buffer): void
  upstreamClosed(side: RelaySide, code: number, reason: Buffer): void
  /** The side's send buffer drained (backpressure). */
  drained(side: RelaySide): void
}

/** ws's setSocket, which its types leave out. */
interface Settable {
  setSocket(socket: Duplex, head: Buffer, options: object): void
}

const NO_EXTENSIONS: Record<string, unknown> = Object.freeze({})

/**
 * One of the two WebSockets of a relay session (ws's class, used for both
 * the client side through the server's `WebSocket` option and the upstream
 * side). Once a session owns it, ws's events go straight to the session
 * instead of through listeners: an idle connection then keeps no listener
 * table (ws's emitter stores its listeners in a dictionary-mode object of
 * about 280 bytes per socket) and no per-side symbol properties; the
 * session's per-side state lives in fields here.
 */
export class RelaySide extends WebSocket {
  owner: SideOwner | undefined = undefined
  /** The client-facing side (else an upstream). */
  isClient = false
  /** Why it is not being read (bits of the session's reasons); read again only at 0. */
  paused = 0
  /** Its socket is corked until the end of the current tick. */
  corked = false
  /** The ws error code when ws closed this side for a protocol error. */
  fault: string | undefined = undefined

  declare _socket: Socket
  declare _events: object | undefined
  declare _eventsCount: number
  declare _extensions: Record<string, unknown>
  declare _receiver: EventEmitter

  /**
   * ws gives every WebSocket its own extensions object, which its Receiver
   * and Sender share; with none negotiated (the default, websocket.perMessageDeflate
   * off) all of them share one empty object instead. ws writes to it only
   * while negotiating, which is over by the time the socket is set. Its
   * Receiver's listener table is shared too (see shareListenerTable).
   */
  setSocket(socket: Duplex, head: Buffer, options: object): void {
    if (Object.keys(this._extensions).length === 0) this._extensions = NO_EXTENSIONS
    ;(WebSocket.prototype as unknown as Settable).setSocket.call(this, socket, head, options)
    shareListenerTable(this._receiver)
  }

  /**
   * Lets go of the listener table itself, not only of its listeners: even
   * empty, EventEmitter's table is a dictionary of about 180 bytes. An
   * emitter without one is a state EventEmitter supports (it creates the
   * table again on the next `on`), and with an owner nothing reads it.
   */
  dropListeners(): void {
    this._events = undefined
    this._eventsCount = 0
  }

  /**
   * ws emits message, ping, pong, close and error; with an owner they are
   * handed to it directly. Before that (the upstream handshake), events go to
   * listeners as usual, and an error nobody listens to is only noted: the
   * 'close' that follows reports it.
   */
  override emit(type: string | symbol, a?: unknown, b?: unknown): boolean {
    const s = this.owner
    if (s !== undefined) {
      switch (type) {
        case 'message':
          if (this.isClient) s.fromClient(a as Buffer, b as boolean)
          else s.fromUpstream(a as Buffer, b as boolean)
          return true
        case 'ping':
          if (this.isClient) s.clientPing(a as Buffer)
          else s.upstreamPing(a as Buffer)
          return true
        case 'pong':
          if (this.isClient) s.clientPong(a as Buffer)
          else s.upstreamPong(a as Buffer)
          return true
        case 'close':
          if (this.isClient) s.clientClosed(a as number, b as Buffer)
          else s.upstreamClosed(this, a as number, b as Buffer)
          return true
        case 'error':
          // ws has closed the side for a protocol error; 'close' follows and does the work.
          this.fault = String((a as { code?: unknown }).code ?? 'WS_ERR').slice(0, 64)
          return true
      }
    } else if (type === 'error' && this.listenerCount('error') === 0) {
      this.fault = String((a as { code?: unknown }).code ?? 'WS_ERR').slice(0, 64)
      return false
    }
    return super.emit(type, a, b)
  }
}
