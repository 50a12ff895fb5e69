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
export class TunnelConnection implements WsConnection {
  idleTicks = 0
  #state: 'open' | 'closing' | 'closed' = 'open'
  /** Frames flowing upstream -> client, and client -> upstream. */
  readonly #toClient = new FrameBoundary()
  readonly #toUpstream = new FrameBoundary()
  #clientClose: Buffer | undefined
  #upstreamClose: Buffer | undefined
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
    for (const s of [client, upstream] as Tagged[]) {
      s[kTunnel] = this
      s.on('end', onEnd)
      s.on('close', onClose)
      s.on('error', onError)
    }
    client.on('data', onClientData)
    upstream.on('data', onUpstreamData)
    upstream.setNoDelay(true)
    ;(client as Socket).setNoDelay?.(true)
  }

  get idleable(): boolean {
    return this.#state === 'open'
  }

  fromClient(chunk: Buffer): void {
    this.idleTicks = 0
    const tracker = this.#toUpstream
    if (this.#state === 'open') {
      tracker.consume(chunk)
      if (!this.upstream.write(chunk)) {
        this.client.pause()
        this.upstream.once('drain', onUpstreamDrain)
      }
      return
    }
    if (this.#state !== 'closing') return
    if (this.#upstreamClose !== undefined) {
      // Up to the next frame boundary, then the close frame; later frames stay here.
      const n = tracker.consume(chunk, 0, true)
      if (n > 0) this.upstream.write(chunk.subarray(0, n))
      if (!tracker.atBoundary) return
      this.upstream.write(this.#upstreamClose)
      this.#upstreamClose = undefined
      this.#closeSent()
      tracker.consume(chunk, n)
    } else tracker.consume(chunk)
    if (tracker.closeSeen && this.#clientClose === undefined) this.client.end()
  }

  fromUpstream(chunk: Buffer): void {
    this.idleTicks = 0
    const tracker = this.#toClient
    if (this.#state === 'open') {
      tracker.consume(chunk)
      if (!this.client.write(chunk)) {
        this.upstream.pause()
        this.client.once('drain', onClientDrain)
      }
      return
    }
    if (this.#state !== 'closing') return
    if (this.#clientClose !== undefined) {
      const n = tracker.consume(chunk, 0, true)
      if (n > 0) this.client.write(chunk.subarray(0, n))
      if (!tracker.atBoundary) return
      this.client.write(this.#clientClose)
      this.#clientClose = undefined
      this.#closeSent()
      tracker.consume(chunk, n)
    } else tracker.consume(chunk)
    if (tracker.closeSeen && this.#upstreamClose === undefined) this.upstream.end()
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
    this.#clientClose = closeFrame(code, reason, false)
    this.#upstreamClose = closeFrame(1001, reason, true)
    this.#deadline = setTimeout(() => this.kill(), this.closeTimeoutMs).unref()
    // Whatever was paused must flow now, up to the frame boundaries.
    this.client.resume()
    this.upstream.resume()
    if (this.#toClient.atBoundary) {
      this.client.write(this.#clientClose)
      this.#clientClose = undefined
      this.#closeSent()
    }
    if (this.#toUpstream.atBoundary) {
      this.upstream.write(this.#upstreamClose)
      this.#upstreamClose = undefined
      this.#closeSent()
    }
  }

  kill(): void {
    this.client.destroy()
    this.upstream.destroy()
  }

  /** Once both close frames are out, each side's own close frame in reply ends it. */
  #closeSent(): void {
    if (++this.#closesSent < 2) return
    if (this.#toUpstream.closeSeen) this.client.end()
    if (this.#toClient.closeSeen) this.upstream.end()
  }
}

function onClientData(this: Tagged, chunk: Buffer): void {
  this[kTunnel].fromClient(chunk)
}
function onUpstreamData(this: Tagged, chunk: Buffer): void {
  this[kTunnel].fromUpstream(chunk)
}
function onUpstreamDrain(this: Tagged): void {
  this[kTunnel].client.resume()
}
function onClientDrain(this: Tagged): void {
  this[kTunnel].upstream.resume()
}
function onEnd(this: Tagged): void {
  this[kTunnel].ended(this)
}
function onClose(this: Tagged, hadError: boolean): void {
  this[kTunnel].closed(this, hadError)
}
function onError(): void {}
