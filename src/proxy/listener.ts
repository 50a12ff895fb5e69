import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { BadRequestError, errorBody, MethodNotAllowedError, RequestTimeoutError, type SluiceError } from '../errors.js'
import { DenseSet, type Slotted } from './dense-set.js'
import { type ForwardContext, forward, framingBroke, trackClientSocket } from './forward.js'
import { listenOn } from './listen.js'

export interface ListenerOptions {
  /** Idle time of a client keep-alive connection, and the longest silence on an active one. */
  clientIdleMs: number
  /** limits.maxHeaderBytes: the largest request head (line and headers); larger gets 431. */
  maxHeaderBytes: number
  /** limits.clientConnections: open client connections beyond it are closed at once (0: no cap). */
  clientConnections: number
}

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
  if (res && !res.writableFinished && res.req.complete && socket.writableLength === 0) {
    socket.setTimeout(idleMs)
    return
  }
  socket.destroy()
}

/** An answer written on a connection that has no response object (the head never parsed). */
function writeRawAnswer(socket: Duplex, status: string, err: SluiceError): void {
  const body = JSON.stringify(errorBody(err))
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  )
}

export class ProxyListener {
  readonly server: Server
  #state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle'
  #closed: Promise<void> | undefined
  /** Open client connections: a graceful stop closes the idle ones itself. */
  readonly #sockets = new DenseSet<TrackedSocket>()

  constructor(
    readonly ctx: ForwardContext,
    opts: ListenerOptions,
  ) {
    this.server = createServer(
      {
        keepAliveTimeout: opts.clientIdleMs,
        // Large uploads may take long: the idle timeout below guards stalls instead.
        requestTimeout: 0,
        headersTimeout: Math.min(60_000, opts.clientIdleMs),
        connectionsCheckingInterval: HEAD_DEADLINE_CHECK_MS,
        maxHeaderSize: opts.maxHeaderBytes,
        // Checked in forward(), which answers with the JSON error body instead of an empty 400.
        requireHostHeader: false,
      },
      (req: IncomingMessage, res: ServerResponse) => forward(ctx, req, res),
    )
    // Over the cap, Node closes a new connection as soon as it is accepted.
    if (opts.clientConnections > 0) this.server.maxConnections = opts.clientConnections
    this.server.timeout = opts.clientIdleMs
    const idleMs = opts.clientIdleMs
    this.server.on('timeout', (socket: TrackedSocket) => onClientSilent(socket, idleMs))
    const sockets = this.#sockets
    this.server.on('connection', (socket: TrackedSocket) => {
      trackClientSocket(socket)
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: TrackedSocket) => {
      if (!socket.writable) {
        socket.destroy()
        return
      }
      // An answer is in progress: it goes first (see framingBroke).
      if (socket._httpMessage && framingBroke(socket)) return
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        writeRawAnswer(socket, '408 Request Timeout', new RequestTimeoutError('the request head did not arrive in time'))
        return
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request'
      writeRawAnswer(socket, status, new BadRequestError(err.code ?? 'malformed request'))
    })
    // CONNECT asks for a tunnel, which a reverse proxy does not open; without
    // this listener Node drops the connection with no answer at all.
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      ctx.sink.unrouted(405)
      socket.on('error', noop)
      writeRawAnswer(socket, '405 Method Not Allowed', new MethodNotAllowedError('CONNECT is not supported by a reverse proxy'))
    })
  }

  async listen(host: string, port: number): Promise<number> {
    const bound = await listenOn(this.server, host, port)
    this.#state = 'running'
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
   * idle for STOP_IDLE_GRACE_MS; whatever is still open at the deadline is
   * destroyed. Calling it twice waits on the same stop.
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
        server.closeAllConnections()
        this.#sockets.forEach((socket) => socket.destroy())
        finish()
      }, timeoutMs)
      sweep.unref()
      deadline.unref()
      if (!server.listening) {
        server.closeAllConnections()
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

  /**
   * Destroys the connections idle for the grace; a connection with a request
   * in progress is never idle, and an upgraded one (no HTTP parser left)
   * belongs to the WebSocket gateway, which closes it with 1001 itself.
   */
  #closeIdle(now: number): void {
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
