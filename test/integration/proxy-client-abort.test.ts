import type { IncomingMessage, ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { connections, inflight } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

interface Seen {
  path: string
  /** The upstream's request or response closed before the response ended. */
  aborted: boolean
  bytes: number
}

describe('a client that goes away', () => {
  let app: TestUpstream
  let proxy: TestProxy
  const seen = new Map<string, Seen>()

  beforeAll(async () => {
    app = await startUpstream('app', (req: IncomingMessage, res: ServerResponse) => {
      const s: Seen = { path: req.url!, aborted: false, bytes: 0 }
      seen.set(req.url!, s)
      res.on('close', () => {
        if (!res.writableFinished) s.aborted = true
      })
      req.on('data', (c: Buffer) => (s.bytes += c.length))
      if (req.url === '/ok') {
        res.end('ok')
        return
      }
      if (req.url === '/stream') {
        // An endless slow download.
        res.writeHead(200, { 'content-type': 'application/octet-stream' })
        const t = setInterval(() => res.write(Buffer.alloc(1024)), 10)
        res.on('close', () => clearInterval(t))
      }
      // /hold and /upload: never answer.
    })
    proxy = await startProxy({ versions: { blue: { instances: [{ url: app.url }] } } })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
  })

  /** Opens a connection, writes `head`, waits until the upstream sees `path`, then destroys the client socket. */
  async function goAway(path: string, head: string, after?: () => boolean): Promise<Seen> {
    const socket = connect(proxy.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.on('data', () => {})
    socket.write(head)
    await expect
      .poll(() => seen.has(path) && (after?.() ?? true), { message: `the upstream to see ${path}` })
      .toBeTruthy()
    socket.destroy()
    const s = seen.get(path)!
    await expect.poll(() => s.aborted, { message: `the upstream request ${path} to be closed` }).toBeTruthy()
    await expect.poll(() => inflight(proxy), { message: 'in flight back to 0' }).toBe(0)
    await expect.poll(async () => (await connections(proxy)), { message: 'no open client connection' }).toBe(0)
    return s
  }

  it('while waiting for response headers: the upstream request is closed', async () => {
    const s = await goAway('/hold', 'GET /hold HTTP/1.1\r\nHost: a\r\n\r\n')
    expect(s.aborted).toBe(true)
  })

  it('in the middle of an upload: the upstream request is closed', async () => {
    const s = await goAway(
      '/upload',
      `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n${'u'.repeat(5000)}`,
      () => (seen.get('/upload')?.bytes ?? 0) > 0,
    )
    expect(s.bytes).toBeLessThan(1_000_000)
  })

  it('in the middle of a download: the upstream response is closed', async () => {
    const s = await goAway('/stream', 'GET /stream HTTP/1.1\r\nHost: a\r\n\r\n')
    expect(s.aborted).toBe(true)
  })

  it('the proxy keeps serving afterwards', async () => {
    const res = await fetch(`${proxy.url}/ok`)
    expect({ status: res.status, body: await res.text() }).toEqual({ status: 200, body: 'ok' })
  })
})
