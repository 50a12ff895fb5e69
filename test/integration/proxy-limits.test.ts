import { createServer, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { connections as openConnections, rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** README "Limits and timeouts": every limit has a key and a default that holds. */
describe('head size limits', () => {
  let app: Server
  let defaults: TestProxy
  let raised: TestProxy

  beforeAll(async () => {
    // Takes request heads far larger than the proxy lets through, so a 431 can only be the proxy's.
    app = createServer({ maxHeaderSize: 1 << 20 }, (req, res) => {
      req.resume()
      const bytes = Number(new URL(req.url!, 'http://x').searchParams.get('head') ?? 0)
      res.writeHead(200, { 'x-big': 'h'.repeat(bytes) })
      res.end('ok')
    })
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r))
    const versions = { blue: { instances: [{ url: `http://127.0.0.1:${(app.address() as AddressInfo).port}` }] } }
    defaults = await startProxy({ versions })
    raised = await startProxy({ versions, limits: { maxHeaderBytes: 65536, maxResponseHeaderBytes: 65536 } })
  })
  afterAll(async () => {
    await defaults.stop()
    await raised.stop()
    app.closeAllConnections()
    await new Promise((r) => app.close(r))
  })

  const head = (bytes: number) => `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(bytes)}\r\nConnection: close\r\n\r\n`

  it('a request head over limits.maxHeaderBytes (default 16384) gets 431; raised, it passes', async () => {
    expect((await rawExchange(defaults.port, [head(15_000)])).status).toBe(200)
    const over = await rawExchange(defaults.port, [head(20_000)])
    expect(over.status).toBe(431)
    expect(JSON.parse(over.body).error.code).toBe('SLUICE_BAD_REQUEST')
    expect((await rawExchange(raised.port, [head(40_000)])).status).toBe(200)
  })

  it('a 32 KiB response head gets 502 by default (limits.maxResponseHeaderBytes); raised, it passes', async () => {
    const small = await fetch(`${defaults.url}/?head=10000`)
    expect(small.status).toBe(200)
    await small.arrayBuffer()
    const big = await fetch(`${defaults.url}/?head=32768`)
    expect(big.status).toBe(502)
    expect(await big.json()).toEqual({
      error: { code: 'SLUICE_UPSTREAM_FAILED', message: 'the upstream response head is too large', requestId: expect.any(String) },
    })
    // Read raw: the test's own HTTP client stops at 16 KiB too.
    const allowed = await rawExchange(raised.port, ['GET /?head=32768 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'])
    expect(allowed.status).toBe(200)
    expect(allowed.headers['x-big']).toHaveLength(32768)
  })
})

describe('connection caps', () => {
  let app: TestUpstream
  let proxy: TestProxy
  const held: ServerResponse[] = []
  const clients: Socket[] = []
  let concurrent = 0
  let maxConcurrent = 0

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      req.resume()
      if (req.url === '/hold') {
        // The head now, the body when the test releases it: the connection stays busy.
        res.write('held, ')
        held.push(res)
        return
      }
      res.end('ok')
    })
    app.server.on('connection', (s) => {
      concurrent++
      maxConcurrent = Math.max(maxConcurrent, concurrent)
      s.on('close', () => concurrent--)
    })
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: app.url }] } },
      outlier: { consecutiveFailures: 0 },
      retries: { attempts: 0 },
      limits: { upstreamConnections: 2 },
      timeouts: { connectMs: 200, upstreamMs: 400 },
    })
  })
  afterEach(() => {
    for (const res of held.splice(0)) res.end('released')
  })
  afterAll(async () => {
    for (const c of clients) c.destroy()
    await proxy.stop()
    await app.close()
  })

  it('an instance gets at most limits.upstreamConnections connections; a request beyond them waits, within its deadline', async () => {
    const holding = [fetch(`${proxy.url}/hold`), fetch(`${proxy.url}/hold`)]
    await expect.poll(() => held.length, { message: 'two requests held upstream' }).toBe(2)
    const bodies = (await Promise.all(holding)).map((r) => r.text())
    const started = performance.now()
    const third = await fetch(`${proxy.url}/hold`)
    const waited = performance.now() - started
    // Never written upstream: it waited in the pool's queue for connectMs plus upstreamMs.
    expect(third.status).toBe(504)
    expect(((await third.json()) as { error: { code: string } }).error.code).toBe('SLUICE_UPSTREAM_TIMEOUT')
    expect(held).toHaveLength(2)
    expect(waited).toBeGreaterThanOrEqual(550)
    expect(waited).toBeLessThan(600 * 1.5)
    for (const res of held.splice(0)) res.end('released')
    expect(await Promise.all(bodies)).toEqual(['held, released', 'held, released'])
    expect(maxConcurrent).toBe(2)
  })

  it('queued requests go as soon as a connection is free', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${proxy.url}/`).then((r) => r.text())))
    expect(answers).toEqual(Array(20).fill('ok'))
    expect(maxConcurrent).toBe(2)
  })

  it('over limits.clientConnections a new connection is closed at once; under it again, served', async () => {
    const capped = await startProxy({
      versions: { blue: { instances: [{ url: app.url }] } },
      limits: { clientConnections: 4 },
    })
    try {
      for (let i = 0; i < 4; i++) {
        const s = connect(capped.port, '127.0.0.1')
        s.on('error', () => {})
        clients.push(s)
        await new Promise<void>((r) => s.once('connect', r))
      }
      await expect
        .poll(async () => (await openConnections(capped)), { message: 'four client connections open' })
        .toBe(4)
      const started = performance.now()
      const over = await rawExchange(capped.port, ['GET / HTTP/1.1\r\nHost: a\r\n\r\n'], { timeoutMs: 3000 })
      expect({ status: over.status, closed: over.closed }).toEqual({ status: 0, closed: true })
      expect(performance.now() - started).toBeLessThan(1000)
      clients.pop()!.destroy()
      await expect.poll(async () => (await openConnections(capped)), { message: 'one closed' }).toBe(3)
      const served = await rawExchange(capped.port, ['GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'])
      expect(served.status).toBe(200)
    } finally {
      for (const c of clients.splice(0)) c.destroy()
      await capped.stop()
    }
  })
})
