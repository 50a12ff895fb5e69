import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, u: TestUpstream) => void

export interface TestUpstream {
  readonly name: string
  readonly url: string
  readonly port: number
  readonly server: Server
  /** Requests seen (not counting /healthz). */
  hits: number
  /** Whether /healthz answers 200 (flip it to fail probes). */
  healthy: boolean
  /** Stops accepting and destroys open sockets (a crash). */
  kill(): Promise<void>
  /** Stops accepting; in-flight requests finish, idle keep-alive sockets close (a graceful restart). */
  closeGracefully(): Promise<void>
  close(): Promise<void>
}

/**
 * A real upstream on a loopback port. By default it answers every path with
 * JSON naming itself; /healthz answers 200 while `healthy` is true.
 */
export async function startUpstream(
  name: string,
  handler?: UpstreamHandler,
  port = 0,
  /** Another loopback address (127.0.0.2, ...) gives several upstreams one port, as DNS names them. */
  host = '127.0.0.1',
): Promise<TestUpstream> {
  const sockets = new Set<Socket>()
  const server = createServer((req, res) => {
    if (req.url === '/healthz') {
      req.resume()
      res.writeHead(u.healthy ? 200 : 503, { 'content-type': 'text/plain' })
      res.end(u.healthy ? 'ok' : 'unhealthy')
      return
    }
    u.hits++
    if (handler) {
      handler(req, res, u)
      return
    }
    req.resume()
    const body = JSON.stringify({ name, method: req.method, url: req.url })
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
    res.end(body)
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(port, host, resolve))
  const actualPort = (server.address() as AddressInfo).port
  const closed = new Promise<void>((resolve) => server.on('close', () => resolve()))
  const u: TestUpstream = {
    name,
    url: `http://${host}:${actualPort}`,
    port: actualPort,
    server,
    hits: 0,
    healthy: true,
    async kill() {
      server.close()
      for (const s of sockets) s.destroy()
      await closed
    },
    async closeGracefully() {
      server.close()
      server.closeIdleConnections()
      await closed
    },
    async close() {
      if (!server.listening) return
      server.close()
      server.closeAllConnections()
      await closed
    },
  }
  return u
}
