import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as http2Connect,
  constants,
  type IncomingHttpHeaders as H2Headers,
} from 'node:http2'
import { connect as netConnect, isIP, type Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls'
import type { Dispatcher } from 'undici'
import type { UpstreamPool, UpstreamTransport } from '../routing/instance.js'
import { isGrpc } from './grpc.js'

export interface H2PoolOptions {
  connectMs: number
  /** Default wait for a response head (a dispatch's own `headersTimeout` wins). */
  headersTimeout: number
  /** Longest silence inside a response body (a dispatch's own `bodyTimeout` wins). */
  bodyTimeout: number
  /** limits.maxResponseHeaderBytes, announced to the upstream as SETTINGS_MAX_HEADER_LIST_SIZE. */
  maxResponseHeaderBytes: number
}

/** An idle session is closed after this long: upstreams (grpc-go, envoy) close idle connections themselves too. */
const IDLE_MS = 60_000

/** Connection-specific headers HTTP/2 forbids (RFC 9113 8.2.2); Node refuses to send them. */
const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings'])

function coded(message: string, code: string): Error {
  return Object.assign(new Error(message), { code })
}

/**
 * HTTP/2 to one h2 or h2c instance over node:http2, with undici's dispatch
 * interface so the data path and mirroring use it as they use a Pool
 * (README "Upstream TLS and HTTP/2": why not undici's own HTTP/2). One
 * session per instance, its streams multiplexed (nghttp2 queues streams
 * beyond the peer's SETTINGS_MAX_CONCURRENT_STREAMS); a session that ends
 * (GOAWAY, error, idle) is replaced on the next request.
 *
 * undici 7.30's HTTP/2 client drops response trailers whenever the
 * stream's 'end' comes before its 'trailers' event, which is always for
 * node:http2: gRPC's status would never arrive. Here a response ends on the
 * stream's 'close', after both.
 */
export class H2Pool implements UpstreamPool {
  readonly #origin: string
  readonly #authority: string
  readonly #scheme: 'http' | 'https'
  readonly #tls: ConnectionOptions
  readonly #host: string
  readonly #port: number
  #session: ClientHttp2Session | undefined
  readonly #sessions = new Set<ClientHttp2Session>()
  #closed = false
  #destroyed = false

  constructor(
    url: string,
    transport: UpstreamTransport,
    readonly opts: H2PoolOptions,
  ) {
    const u = new URL(url)
    this.#origin = u.origin
    this.#authority = u.host
    this.#scheme = u.protocol === 'https:' ? 'https' : 'http'
    this.#host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
    this.#port = Number(u.port) || (this.#scheme === 'https' ? 443 : 80)
    // The name sent (SNI) and checked: tls.servername, else the URL's host; none for an IP address.
    const servername = transport.servername ?? (isIP(this.#host) === 0 ? this.#host : undefined)
    this.#tls = {
      rejectUnauthorized: transport.verify,
      ...(transport.ca !== undefined ? { ca: transport.ca } : {}),
      ...(servername !== undefined ? { servername } : {}),
    }
  }

  get closed(): boolean {
    return this.#closed
  }

  get destroyed(): boolean {
    return this.#destroyed
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const call = new H2Call(handler, opts.headersTimeout ?? this.opts.headersTimeout, opts.bodyTimeout ?? this.opts.bodyTimeout)
    if (this.#closed) {
      call.fail(coded('the upstream pool is closed', 'UND_ERR_CLOSED'))
      return false
    }
    let session: ClientHttp2Session
    try {
      session = this.#sessionNow()
    } catch (err) {
      call.fail(err as Error)
      return false
    }
    call.start(session, this.#headers(opts), (opts.body ?? null) as Buffer | Readable | string | null)
    return true
  }

  /** Lets open streams finish, then closes the sessions. */
  close(): Promise<void> {
    this.#closed = true
    this.#session = undefined
    const waits = [...this.#sessions].map((s) => new Promise<void>((resolve) => s.close(resolve)))
    return Promise.all(waits).then(() => {})
  }

  /** Cancels every stream and closes the sessions at once. */
  destroy(err?: Error | null): Promise<void> {
    this.#closed = true
    this.#destroyed = true
    this.#session = undefined
    for (const s of this.#sessions) s.destroy(err ?? undefined)
    return Promise.resolve()
  }

  #sessionNow(): ClientHttp2Session {
    const current = this.#session
    if (current !== undefined && !current.closed && !current.destroyed) return current
    const session = http2Connect(this.#origin, {
      settings: { enablePush: false, maxHeaderListSize: this.opts.maxResponseHeaderBytes },
      maxSessionMemory: 64,
      createConnection: () => this.#socket(),
    })
    this.#session = session
    this.#sessions.add(session)
    const timer = setTimeout(() => {
      session.destroy(coded(`connect timeout after ${this.opts.connectMs} ms`, 'UND_ERR_CONNECT_TIMEOUT'))
    }, this.opts.connectMs)
    session.once('connect', () => clearTimeout(timer))
    // Each pending stream gets the session's error too (as its cause); this keeps it from being unhandled.
    session.on('error', () => {})
    session.setTimeout(IDLE_MS, () => session.close())
    const gone = () => {
      clearTimeout(timer)
      this.#sessions.delete(session)
      if (this.#session === session) this.#session = undefined
    }
    session.once('goaway', () => {
      if (this.#session === session) this.#session = undefined
    })
    session.once('close', gone)
    return session
  }

  /**
   * The session's connection, made here rather than by node:http2 so it
   * has TCP_NODELAY (node:http2 leaves Nagle on, and then a unary call's
   * small frames wait for the peer's delayed ACK: several ms a call) and no
   * socket manipulation is needed once the session owns it.
   */
  #socket(): Socket {
    const socket =
      this.#scheme === 'https'
        ? tlsConnect({ ...this.#tls, host: this.#host, port: this.#port, ALPNProtocols: ['h2'] })
        : netConnect({ host: this.#host, port: this.#port })
    socket.setNoDelay(true)
    return socket
  }

  /**
   * The request head as HTTP/2 sends it: Host becomes :authority,
   * connection-specific headers stay behind. TE is hop-by-hop (the data path
   * drops the client's); a gRPC call carries `te: trailers` as its protocol
   * requires, which says what is true: trailers come back through the proxy.
   */
  #headers(opts: Dispatcher.DispatchOptions): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {
      ':method': opts.method,
      ':path': opts.path,
      ':scheme': this.#scheme,
    }
    const flat = opts.headers as string[] | null | undefined
    if (Array.isArray(flat)) {
      for (let i = 0; i < flat.length; i += 2) {
        const name = flat[i]!.toLowerCase()
        const value = flat[i + 1]!
        if (name === 'host') {
          out[':authority'] ??= value
          continue
        }
        if (H2_FORBIDDEN.has(name) || name === 'te') continue
        if (name === 'content-type' && isGrpc(value)) out.te = 'trailers'
        const prev = out[name]
        if (prev === undefined) out[name] = value
        else if (Array.isArray(prev)) prev.push(value)
        else out[name] = [String(prev), value]
      }
    }
    out[':authority'] ??= this.#authority
    return out
  }
}

/** One request on a session, and the controller its handler pauses, resumes and aborts. */
class H2Call implements Dispatcher.DispatchController {
  #aborted = false
  #paused = false
  #reason: Error | null = null
  #stream: ClientHttp2Stream | undefined
  #timer: NodeJS.Timeout | undefined
  #responded = false
  #ended = false
  #done = false
  #error: Error | undefined
  #trailers: IncomingHttpHeaders | undefined

  constructor(
    readonly handler: Dispatcher.DispatchHandler,
    readonly headersTimeout: number,
    readonly bodyTimeout: number,
  ) {}

  get aborted(): boolean {
    return this.#aborted
  }

  get paused(): boolean {
    return this.#paused
  }

  get reason(): Error | null {
    return this.#reason
  }

  abort(reason: Error): void {
    if (this.#done) return
    this.#aborted = true
    this.#reason = reason
    this.fail(reason)
  }

  pause(): void {
    this.#paused = true
    this.#stream?.pause()
  }

  resume(): void {
    this.#paused = false
    this.#stream?.resume()
  }

  start(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body: Buffer | Readable | string | null): void {
    this.handler.onRequestStart?.(this, {})
    if (this.#done) return
    let stream: ClientHttp2Stream
    try {
      stream = session.request(headers, { endStream: body === null })
    } catch (err) {
      this.fail(err as Error)
      return
    }
    this.#stream = stream
    this.#timer = setTimeout(
      () => this.fail(coded(`no response head in ${this.headersTimeout} ms`, 'UND_ERR_HEADERS_TIMEOUT')),
      this.headersTimeout,
    )
    stream.on('response', (h: H2Headers) => this.#onResponse(h))
    stream.on('data', (chunk: Buffer) => {
      if (!this.#done) this.handler.onResponseData?.(this, chunk)
    })
    stream.once('trailers', (t: H2Headers) => {
      this.#trailers = plain(t)
    })
    stream.once('end', () => {
      this.#ended = true
    })
    stream.once('error', (err: Error) => {
      // A stream pending on a session that failed to connect is cancelled with the session's error as its cause.
      const cause = (err as { code?: string; cause?: unknown }).cause
      this.#error ??= (err as { code?: string }).code === 'ERR_HTTP2_STREAM_CANCEL' && cause instanceof Error ? cause : err
    })
    // 'close' comes after both 'end' and 'trailers', whichever node:http2 emits first.
    stream.once('close', () => this.#onClose(stream))
    if (body === null) return
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      stream.end(body)
      return
    }
    // pipe() holds the client's body back while the upstream's flow-control window is full.
    body.pipe(stream)
    body.once('error', () => stream.close(constants.NGHTTP2_CANCEL))
  }

  #onResponse(h: H2Headers): void {
    if (this.#done) return
    const status = Number(h[':status'])
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#responded = true
    this.#stream?.setTimeout(this.bodyTimeout, () =>
      this.fail(coded(`response body idle for ${this.bodyTimeout} ms`, 'UND_ERR_BODY_TIMEOUT')),
    )
    this.handler.onResponseStart?.(this, status, plain(h), '')
    if (this.#paused) this.#stream?.pause()
  }

  #onClose(stream: ClientHttp2Stream): void {
    if (this.#done) return
    if (this.#responded && this.#ended && this.#error === undefined) {
      this.#done = true
      clearTimeout(this.#timer)
      this.handler.onResponseEnd?.(this, this.#trailers ?? {})
      return
    }
    this.fail(this.#error ?? coded(`upstream stream closed (HTTP/2 code ${stream.rstCode ?? 0})`, 'UND_ERR_SOCKET'))
  }

  /** Ends the call with an error: the stream is cancelled (RST_STREAM) and the handler told once. */
  fail(err: Error): void {
    if (this.#done) return
    this.#done = true
    clearTimeout(this.#timer)
    const stream = this.#stream
    if (stream !== undefined && !stream.closed) stream.close(constants.NGHTTP2_CANCEL)
    this.handler.onResponseError?.(this, err)
  }
}

/** node:http2's header object without its pseudo-headers, as undici hands headers to a handler. */
function plain(h: H2Headers): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const name in h) {
    if (name.charCodeAt(0) === 58 /* : */) continue
    out[name] = h[name] as string | string[]
  }
  return out
}
