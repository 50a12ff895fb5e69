import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { DenseSet, type Slotted } from './dense-set.js'
import { type ForwardContext, forward } from './forward.js'
import { listenOn } from './listen.js'

export interface ListenerOptions {
  /** Idle time of a client keep-alive connection, and the longest silence on an active one. */
  clientIdleMs: number
}

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
        // Checked in forward(), which answers with the JSON error body instead of an empty 400.
        requireHostHeader: false,
      },
      (req: IncomingMessage, res: ServerResponse) => forward(ctx, req, res),
    )
    this.server.timeout = opts.clientIdleMs
    const idleMs = opts.clientIdleMs
    this.server.on('timeout', (socket: TrackedSocket) => onClientSilent(socket, idleMs))
    const sockets = this.#sockets
    this.server.on('connection', (socket: TrackedSocket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) {
        socket.destroy()
        return
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request'
      const body = JSON.stringify({ error: { code: 'SLUICE_BAD_REQUEST', message: err.code ?? 'malformed request' } })
      socket.end(
        `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      )
    })
  }

  async listen(host: string, port: number): Promise<number> {
    const bound = await listenOn(this.server, host, port)
    this.#state = 'running'
    return bound
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
