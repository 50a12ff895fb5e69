import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type ForwardContext, forward } from './forward.js'

export interface ListenerOptions {
  /** Idle time of a client keep-alive connection, and the longest silence on an active one. */
  clientIdleMs: number
}

/**
 * The public HTTP listener. Node's HTTP parser (llhttp) rejects malformed
 * requests, conflicting Content-Length/Transfer-Encoding and oversized
 * headers with a 4xx before they reach `forward`.
 */
export class ProxyListener {
  readonly server: Server
  #state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle'
  #closed: Promise<void> | undefined

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
      },
      (req: IncomingMessage, res: ServerResponse) => forward(ctx, req, res),
    )
    this.server.timeout = opts.clientIdleMs
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
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.#state = 'running'
    return (this.server.address() as AddressInfo).port
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0
  }

  /**
   * Graceful stop: no new connections, idle keep-alive connections closed,
   * responses in progress finish with `Connection: close`; whatever is still
   * open at the deadline is destroyed. Calling it twice waits on the same stop.
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
      // Connections turn idle as their last response ends; close each as it does.
      const sweep = setInterval(() => server.closeIdleConnections(), 25)
      const deadline = setTimeout(() => {
        server.closeAllConnections()
        finish()
      }, timeoutMs)
      sweep.unref()
      deadline.unref()
      if (!server.listening) {
        server.closeAllConnections()
        finish()
        return
      }
      server.close(() => finish())
      server.closeIdleConnections()
    })
    return this.#closed
  }

  get state(): string {
    return this.#state
  }
}
