import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http'
import {
  createServer as createH2cServer,
  createSecureServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type ServerHttp2Session,
} from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { BadRequestError, HeadTooLargeError, MethodNotAllowedError, RequestTimeoutError } from '../errors.js'
import type { Certificates } from './certificates.js'
import { closeWhenSilent, readReleased, writeOwnAnswer } from './client-socket.js'
import { DenseSet, type Slotted } from './dense-set.js'
import {
  afterAnswers,
  awaitsUpstream,
  type ForwardContext,
  forward,
  forwardH2,
  framingBroke,
  refuseConnectH2,
  refuseExpectation,
  trackClientSocket,
  trackH2Session,
} from './forward.js'
import { listenOn } from './listen.js'

export interface ListenerOptions {
  /** Idle time of a client keep-alive connection, and the longest silence on an active one. */
  clientIdleMs: number
  /** limits.maxHeaderBytes: the largest request head (line and headers); larger gets 431. */
  maxHeaderBytes: number
  /** limits.clientConnections: open client connections beyond it are closed at once (0: no cap). */
  clientConnections: number
  /** listen.tls: the certificates to serve; undefined for cleartext. */
  certificates?: Certificates | undefined
  /** listen.http2: ALPN h2 with TLS, h2c by prior knowledge without. */
  http2?: boolean
  /** listen.maxConcurrentStreams: streams one HTTP/2 connection may have open. */
  maxConcurrentStreams?: number
}

/** What a client speaking HTTP/2 without TLS sends first (RFC 9113 3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

/**
 * Node checks the request-head deadline (headersTimeout) of every connection
 * only this often (30 s by default, so a slowloris client sending a byte
 * every few seconds outlived a 10 s deadline by 20 s). Checking every half
 * second closes it within the deadline plus half a second, for one pass over
 * the connection list.
 */
const HEAD_DEADLINE_CHECK_MS = 500

/**
 * The public HTTP listener. Node's HTTP parser (llhttp) rejects malformed
 * requests, conflicting Content-Length/Transfer-Encoding and oversized
 * headers with a 4xx before they reach `forward`.
 */
/**
 * How long a keep-alive connection must have been idle, once a graceful stop
 * began, before it is closed. Closing an idle connection at once resets a
 * request the client has just sent on it (it is on the wire, not yet read);
 * within the grace such a request is served, with `Connection: close`.
 */
const STOP_IDLE_GRACE_MS = 250
const STOP_SWEEP_MS = 25

const kIdleSince = Symbol('sluice.idleSince')
type TrackedSocket = Socket & Slotted & { [kIdleSince]?: number; _httpMessage?: ServerResponse | null; parser?: unknown }

function noop(): void {}

/**
 * A client connection silent for clientIdleMs (Node's socket timeout). A
 * client that stalls its request, or stops reading the response (bytes
 * queued for it), is closed. But while its request is complete and nothing
 * is queued for it, the wait is on the upstream, which timeouts.upstreamMs
 * and bodyIdleMs bound: the timer is re-armed instead, so a slow upstream's
 * answer still reaches the client.
 */
function onClientSilent(socket: TrackedSocket, idleMs: number): void {
  const res = socket._httpMessage
  if (res && awaitsUpstream(res) && res.req.complete && socket.writableLength === 0) {
    socket.setTimeout(idleMs)
    return
  }
  socket.destroy()
}

export class ProxyListener {
  /**
   * The listening server. With TLS it is an https server, or with HTTP/2 an
   * HTTP/2 server that runs Node's HTTP/1.1 server code on sockets that chose
   * http/1.1 by ALPN: either way it emits the HTTP/1.1 server's events
   * ('request', 'upgrade', 'clientError', 'connect'), hence the one type.
   */
  readonly server: Server
  readonly certificates: Certificates | undefined
  /** Open HTTP/2 sessions: a graceful stop sends each a GOAWAY. */
  readonly #sessions = new Set<Http2Session>()
  #state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle'
  #closed: Promise<void> | undefined
  /** Open client connections: a graceful stop closes the idle ones itself. */
  readonly #sockets = new DenseSet<TrackedSocket>()

  constructor(
    readonly ctx: ForwardContext,
    opts: ListenerOptions,
  ) {
    const http1: ServerOptions = {
      keepAliveTimeout: opts.clientIdleMs,
      // Large uploads may take long: the idle timeout below guards stalls instead.
      requestTimeout: 0,
      headersTimeout: Math.min(60_000, opts.clientIdleMs),
      connectionsCheckingInterval: HEAD_DEADLINE_CHECK_MS,
      maxHeaderSize: opts.maxHeaderBytes,
      // Checked in forward(), which answers with the JSON error body instead of an empty 400.
      requireHostHeader: false,
    }
    const certificates = (this.certificates = opts.certificates)
    // A TLS handshake is part of the request head's deadline: a client that stalls it is closed as one stalling its head.
    const handshakeTimeout = http1.headersTimeout
    const h2Settings = {
      settings: {
        maxConcurrentStreams: opts.maxConcurrentStreams ?? 100,
        // A head over limits.maxHeaderBytes gets 431 from forwardH2; nghttp2 refuses only what is far beyond it.
        maxHeaderListSize: opts.maxHeaderBytes * 2,
      },
    }
    const onRequest = (req: IncomingMessage, res: ServerResponse) => forward(ctx, req, res)
    let h2: Http2Server | undefined
    if (certificates === undefined) {
      this.server = createServer(http1, onRequest)
      if (opts.http2 === true) {
        h2 = createH2cServer(h2Settings, (req, res) => forwardH2(ctx, req, res))
        h2.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => refuseConnectH2(ctx, req, res))
        h2.on('checkExpectation', (req: Http2ServerRequest, res: Http2ServerResponse) => refuseExpectation(ctx, req, res))
        this.#sniffPreface(h2, opts.clientIdleMs)
      }
    } else if (opts.http2 === true) {
      // One server for both ALPN answers: Node runs its HTTP/1.1 server code on a socket that chose http/1.1.
      const server = createSecureServer(
        { ...certificates.serverOptions(), ...h2Settings, allowHTTP1: true, handshakeTimeout },
        (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
          if (req.httpVersionMajor === 2) forwardH2(ctx, req as Http2ServerRequest, res as Http2ServerResponse)
          else forward(ctx, req as IncomingMessage, res as ServerResponse)
        },
      )
      // The HTTP/1.1 settings Node's HTTP/1.1 server code reads from whichever server hands it the socket.
      Object.assign(server, http1)
      h2 = server as unknown as Http2Server
      this.server = server as unknown as Server
    } else {
      this.server = createHttpsServer(
        { ...http1, ...certificates.serverOptions(), ALPNProtocols: ['http/1.1'], handshakeTimeout },
        onRequest,
      )
    }
    certificates?.bind(this.server as unknown as { setSecureContext(o: { cert: Buffer; key: Buffer }): void })
    if (h2 !== undefined) this.#trackSessions(h2, opts.clientIdleMs)
    // Over the cap, Node closes a new connection as soon as it is accepted.
    if (opts.clientConnections > 0) this.server.maxConnections = opts.clientConnections
    this.server.timeout = opts.clientIdleMs
    const idleMs = opts.clientIdleMs
    this.server.on('timeout', (socket: TrackedSocket) => onClientSilent(socket, idleMs))
    const sockets = this.#sockets
    // One handler for every socket ('this' is the socket), and on() not once(): once() wraps it per connection, and a closure or a wrapper per connection costs ~270 bytes each, idle or not.
    const forget = function (this: TrackedSocket): void {
      sockets.delete(this)
    }
    // With TLS, Node's HTTP/1.1 code gets the TLS socket ('secureConnection'), not the TCP one.
    this.server.on(certificates === undefined ? 'connection' : 'secureConnection', (socket: TrackedSocket) => {
      // An HTTP/2 session is stopped by GOAWAY, never by the idle sweep of HTTP/1.1 connections.
      if ((socket as Socket as TLSSocket).alpnProtocol === 'h2') return
      trackClientSocket(socket)
      sockets.add(socket)
      socket.on('close', forget)
    })
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: TrackedSocket) => {
      if (!socket.writable) {
        socket.destroy()
        return
      }
      // An answer is in progress: it goes first (see framingBroke).
      if (socket._httpMessage && framingBroke(socket)) return
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        writeOwnAnswer(socket, new RequestTimeoutError('the request head did not arrive in time'))
        return
      }
      writeOwnAnswer(
        socket,
        err.code === 'HPE_HEADER_OVERFLOW' ? new HeadTooLargeError() : new BadRequestError(err.code ?? 'malformed request'),
      )
    })
    // With TLS and http2, HTTP/2 requests come here too.
    this.server.on(
      'checkExpectation',
      (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) =>
        refuseExpectation(ctx, req, res),
    )
    // CONNECT asks for a tunnel, which a reverse proxy does not open; without
    // this listener Node drops the connection with no answer at all.
    this.server.on('connect', (req: IncomingMessage | Http2ServerRequest, socket: Duplex | Http2ServerResponse) => {
      // With TLS and http2, the one server also hands over HTTP/2 CONNECT streams.
      if (req.httpVersionMajor === 2) {
        refuseConnectH2(ctx, req as Http2ServerRequest, socket as Http2ServerResponse)
        return
      }
      const raw = socket as Duplex
      ctx.sink.unrouted(405)
      raw.on('error', noop)
      readReleased(raw)
      closeWhenSilent(raw)
      afterAnswers(raw, () => writeOwnAnswer(raw, new MethodNotAllowedError()))
    })
  }

  /**
   * h2c by prior knowledge on the HTTP/1.1 port: the first bytes of a
   * connection tell the HTTP/2 preface from an HTTP/1.1 request line, so
   * plain clients and load-balancer checks keep working. Node's HTTP/1.1
   * connection handler runs only once the bytes said HTTP/1.1.
   */
  #sniffPreface(h2: Http2Server, idleMs: number): void {
    const server = this.server
    const http1 = server.listeners('connection') as ((socket: Socket) => void)[]
    server.removeAllListeners('connection')
    const sockets = this.#sockets
    server.on('connection', (socket: TrackedSocket) => {
      let seen: Buffer | undefined
      const silent = () => socket.destroy()
      const onData = (chunk: Buffer) => {
        const data = seen === undefined ? chunk : Buffer.concat([seen, chunk])
        const n = Math.min(data.length, H2_PREFACE.length)
        const isH2 = data.compare(H2_PREFACE, 0, n, 0, n) === 0
        if (isH2 && n < H2_PREFACE.length) {
          seen = data
          return
        }
        socket.off('data', onData)
        socket.off('timeout', silent)
        socket.off('error', noop)
        socket.setTimeout(0)
        socket.pause()
        socket.unshift(data)
        if (isH2) {
          sockets.delete(socket)
          h2.emit('connection', socket)
        } else {
          for (const listener of http1) listener.call(server, socket)
          // Node's handler listens for 'data' but leaves a paused socket paused: the bytes read here go first.
          socket.resume()
        }
      }
      socket.on('data', onData)
      socket.on('error', noop)
      socket.setTimeout(idleMs, silent)
    })
  }

  /**
   * HTTP/2 sessions: kept for the GOAWAY of a graceful stop; one silent for
   * clientIdleMs is closed the same way (streams still open finish first).
   */
  #trackSessions(h2: Http2Server, idleMs: number): void {
    const sessions = this.#sessions
    // Node sets it on each session's socket; a silent one emits 'timeout' on its session.
    ;(h2 as unknown as { timeout: number }).timeout = idleMs
    h2.on('session', (session: ServerHttp2Session) => {
      trackH2Session(session)
      sessions.add(session)
      session.once('close', () => sessions.delete(session))
      session.on('timeout', () => session.close())
      if (this.#state === 'stopping' || this.#state === 'stopped') session.close()
    })
  }

  async listen(host: string, port: number): Promise<number> {
    const bound = await listenOn(this.server, host, port)
    this.#state = 'running'
    this.certificates?.watch()
    return bound
  }

  /**
   * The one way to tap the data path: `tap` sees each request once it was
   * sent upstream (mirroring). Undefined removes it, so untapped traffic
   * pays one undefined check.
   */
  setTap(tap: ForwardContext['onSent']): void {
    this.ctx.onSent = tap
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0
  }

  /**
   * Graceful stop: no new connections; responses in progress finish with
   * `Connection: close`; a keep-alive connection is closed once it has been
   * idle for STOP_IDLE_GRACE_MS (a retiring worker's, with ctx.stopSpread
   * set, only by its client or clientIdleMs); whatever is still open at the
   * deadline is destroyed. Calling it twice waits on the same stop.
   */
  close(timeoutMs: number): Promise<void> {
    if (this.#closed) return this.#closed
    this.#state = 'stopping'
    this.ctx.stopping = true
    const server = this.server
    this.#closed = new Promise<void>((resolve) => {
      let done = false
      const finish = () => {
        if (done) return
        done = true
        clearInterval(sweep)
        clearTimeout(deadline)
        this.#state = 'stopped'
        this.ctx.deadlines.stop()
        resolve()
      }
      const sweep = setInterval(() => this.#closeIdle(performance.now()), STOP_SWEEP_MS)
      const deadline = setTimeout(() => {
        this.#destroyAll()
        finish()
      }, timeoutMs)
      sweep.unref()
      deadline.unref()
      this.certificates?.stop()
      // GOAWAY: the client opens no new stream here; the open ones finish.
      for (const session of this.#sessions) session.close()
      if (!server.listening) {
        this.#destroyAll()
        finish()
        return
      }
      // http's close() would also destroy every idle connection at once
      // (see STOP_IDLE_GRACE_MS): keep its other work, skip that part.
      server.closeIdleConnections = noop
      server.close(() => finish())
      delete (server as { closeIdleConnections?: unknown }).closeIdleConnections
      this.#closeIdle(performance.now())
    })
    return this.#closed
  }

  #destroyAll(): void {
    // An HTTP/2 server with HTTP/1.1 fallback has no closeAllConnections: the sockets are destroyed one by one.
    ;(this.server as Partial<Server>).closeAllConnections?.call(this.server)
    this.#sockets.forEach((socket) => socket.destroy())
    for (const session of this.#sessions) session.destroy()
  }

  /**
   * Destroys the connections idle for the grace; a connection with a request
   * in progress is never idle, and an upgraded one (no HTTP parser left)
   * belongs to the WebSocket gateway, which closes it with 1001 itself.
   */
  #closeIdle(now: number): void {
    // A retiring worker closes no idle connection (see RETIRE_SPREAD_MS in lifecycle/assemble.ts): its clients
    // go after a response with `Connection: close`, or close it themselves, or clientIdleMs does.
    if (this.ctx.stopSpread !== undefined) return
    this.#sockets.forEach((socket) => {
      if (socket.parser === null) return
      const res = socket._httpMessage
      if (res && !res.writableFinished) {
        socket[kIdleSince] = undefined
        return
      }
      const since = socket[kIdleSince]
      if (since === undefined) socket[kIdleSince] = now
      else if (now - since >= STOP_IDLE_GRACE_MS) socket.destroy()
    })
  }

  get state(): string {
    return this.#state
  }
}
