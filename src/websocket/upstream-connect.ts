import { type ClientRequest, type IncomingMessage, request } from 'node:http'
import type { Socket } from 'node:net'
import type WebSocket from 'ws'
import { passedUpgradeHeaders } from './handshake.js'
import { RelaySide } from './relay-side.js'

export interface HandshakeBounds {
  /** Until the TCP connection is up. */
  connectMs: number
  /** From then until the upstream's answer to the handshake. */
  upstreamMs: number
}

export interface RelayUpstreamOptions extends HandshakeBounds {
  maxPayload: number
  perMessageDeflate: boolean
  /** How long a close handshake toward the upstream may take before its socket is destroyed. */
  closeTimeoutMs: number
}

/** The upstream could not be reached, or broke off before answering. */
export interface Failed {
  kind: 'failed'
  error: Error
  /** No connection was made: the handshake cannot have reached the application (retry is safe). */
  beforeSend: boolean
  timeout: boolean
}

export type RelayOutcome =
  /** `headers`: the upstream's 101 header lines a client may see (Set-Cookie and the like). */
  | { kind: 'open'; ws: RelaySide; protocol: string; headers: string[] }
  | { kind: 'refused'; ws: RelaySide; res: IncomingMessage }
  | Failed

export type TunnelOutcome =
  | { kind: 'open'; socket: Socket; res: IncomingMessage; head: Buffer }
  | { kind: 'refused'; req: ClientRequest; res: IncomingMessage }
  | Failed

export interface Attempt<T> {
  readonly done: Promise<T>
  /** The client went away: give up on this upstream. */
  abort(): void
}

/**
 * Bounds a handshake in two phases, like the HTTP data path: connectMs for
 * the TCP connection, then upstreamMs for the answer. `connected` tells a
 * failure that cannot have reached the application from one that may have.
 */
class HandshakeBound {
  connected = false
  #timer: NodeJS.Timeout

  constructor(
    req: ClientRequest,
    readonly bounds: HandshakeBounds,
    readonly onTimeout: (beforeSend: boolean) => void,
  ) {
    this.#timer = setTimeout(() => onTimeout(true), bounds.connectMs).unref()
    req.once('socket', (s: Socket) => {
      if (s.connecting) s.once('connect', () => this.#onConnect())
      else this.#onConnect()
    })
  }

  #onConnect(): void {
    this.connected = true
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.onTimeout(false), this.bounds.upstreamMs).unref()
  }

  clear(): void {
    clearTimeout(this.#timer)
  }
}

/**
 * Opens the proxy's own WebSocket to an upstream (relay mode). The client's
 * subprotocol offer goes out as a plain header rather than through ws's
 * `protocols` argument: ws would then fail a handshake in which the upstream
 * picks none of them, where a proxy must pass that choice on. The upstream's
 * pick is read (and hidden from ws's check) in the 'upgrade' event and
 * checked here against the offer. Extensions are negotiated by this client
 * for this side only.
 */
export function openRelayUpstream(
  url: string,
  headers: Record<string, string>,
  offer: readonly string[],
  opts: RelayUpstreamOptions,
): Attempt<RelayOutcome> {
  let settle!: (o: RelayOutcome) => void
  const done = new Promise<RelayOutcome>((resolve) => {
    settle = resolve
  })
  let settled = false
  let guard: HandshakeBound | undefined
  const failed = (error: Error, timeout = false): Failed => ({
    kind: 'failed',
    error,
    beforeSend: !(guard?.connected ?? false),
    timeout,
  })
  let chosen = ''
  let passed: string[] = []
  const ws = new RelaySide(url, {
    headers: offer.length > 0 ? { ...headers, 'sec-websocket-protocol': offer.join(', ') } : headers,
    perMessageDeflate: opts.perMessageDeflate,
    maxPayload: opts.maxPayload,
    autoPong: false,
    closeTimeout: opts.closeTimeoutMs,
    followRedirects: false,
    finishRequest(req: ClientRequest) {
      guard = new HandshakeBound(req, opts, (beforeSend) => {
        finish({ kind: 'failed', error: new Error('upstream handshake timed out'), beforeSend, timeout: true })
        ws.terminate()
      })
      req.end()
    },
  } as WebSocket.ClientOptions)
  const onUpgrade = (res: IncomingMessage) => {
    chosen = res.headers['sec-websocket-protocol'] ?? ''
    delete res.headers['sec-websocket-protocol']
    passed = passedUpgradeHeaders(res)
  }
  const onRefused = (_req: ClientRequest, res: IncomingMessage) => finish({ kind: 'refused', ws, res })
  const onOpen = () => {
    if (chosen !== '' && !offer.includes(chosen)) {
      ws.terminate()
      finish(failed(new Error(`upstream chose subprotocol "${chosen}", which was not offered`)))
      return
    }
    finish({ kind: 'open', ws, protocol: chosen, headers: passed })
  }
  const onError = (err: Error) => finish(failed(err))
  const onClose = () => finish(failed(new Error('upstream closed during the handshake')))
  // Settled, the attempt lets go of the socket: a long-lived connection keeps none of this.
  const finish = (o: RelayOutcome) => {
    if (settled) return
    settled = true
    guard?.clear()
    guard = undefined
    // A fresh listener table: the one the handshake grew would stay as large. Errors from now on
    // are only noted (RelaySide) until a session owns the socket.
    ws.removeAllListeners()
    settle(o)
  }
  ws.once('upgrade', onUpgrade)
  ws.once('unexpected-response', onRefused)
  ws.once('open', onOpen)
  ws.once('error', onError)
  ws.once('close', onClose)
  return {
    done,
    abort() {
      finish(failed(new Error('client went away')))
      ws.terminate()
    },
  }
}

/** Sends the client's upgrade request to an upstream over a fresh connection (tunnel mode). */
export function openTunnelUpstream(
  origin: string,
  path: string,
  headers: string[],
  bounds: HandshakeBounds,
): Attempt<TunnelOutcome> {
  let settle!: (o: TunnelOutcome) => void
  const done = new Promise<TunnelOutcome>((resolve) => {
    settle = resolve
  })
  let settled = false
  const finish = (o: TunnelOutcome): boolean => {
    if (settled) return false
    settled = true
    guard.clear()
    settle(o)
    return true
  }
  const u = new URL(origin)
  const req = request({
    host: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
    port: u.port === '' ? 80 : Number(u.port),
    path,
    method: 'GET',
    headers,
    setHost: false,
    agent: false,
  })
  const guard = new HandshakeBound(req, bounds, (beforeSend) => {
    finish({ kind: 'failed', error: new Error('upstream handshake timed out'), beforeSend, timeout: true })
    req.destroy()
  })
  req.once('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
    if (!finish({ kind: 'open', socket, res, head })) socket.destroy()
  })
  req.once('response', (res: IncomingMessage) => {
    if (!finish({ kind: 'refused', req, res })) req.destroy()
  })
  req.on('error', (error: Error) => {
    finish({ kind: 'failed', error, beforeSend: !guard.connected, timeout: false })
  })
  req.end()
  return {
    done,
    abort() {
      finish({ kind: 'failed', error: new Error('client went away'), beforeSend: !guard.connected, timeout: false })
      req.destroy()
    },
  }
}
