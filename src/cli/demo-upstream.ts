import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface DemoUpstream {
  server: Server
  url: string
}

/**
 * A demo application instance: answers every path with its version and
 * instance, /healthz with 200. `?delay=MS` and `?status=CODE` let a demo
 * show latency and errors; `X-Demo-Fail-Rate` set at start makes a version
 * fail a share of requests (a bad canary).
 */
export async function startDemoUpstream(version: string, instance: string, failRate = 0): Promise<DemoUpstream> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://demo')
    if (url.pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok\n')
      return
    }
    const delay = Math.min(Number(url.searchParams.get('delay') ?? 0) || 0, 30_000)
    let status = Number(url.searchParams.get('status') ?? 200) || 200
    if (failRate > 0 && Math.random() < failRate) status = 500
    req.resume()
    const answer = () => {
      const body = `${JSON.stringify({ version, instance, method: req.method, path: url.pathname, status })}\n`
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-version': version,
        'x-instance': instance,
      })
      res.end(body)
    }
    if (delay > 0) setTimeout(answer, delay)
    else answer()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { server, url: `http://127.0.0.1:${port}` }
}
