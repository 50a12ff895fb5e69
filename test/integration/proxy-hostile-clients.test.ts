import type { IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type LoadResult, steadyLoad } from '../helpers/load.js'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { connections, inflight, rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const CLIENT_IDLE_MS = 1000

describe('hostile clients while other requests keep flowing', () => {
  let app: TestUpstream
  let proxy: TestProxy
  let load: ReturnType<typeof steadyLoad>
  let loadResult: Promise<LoadResult> | undefined
  const uploads: IncomingMessage[] = []
  const paths = new Set<string>()
  let endlessClosed = false

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      paths.add(req.url!)
      if (req.url === '/upload') uploads.push(req)
      if (req.url === '/endless') {
        // Writes as fast as the proxy takes it, until the proxy closes it.
        req.resume()
        const block = Buffer.alloc(64 * 1024, 7)
        const pump = () => {
          while (!res.destroyed && res.write(block));
        }
        res.on('drain', pump)
        res.on('close', () => (endlessClosed = true))
        pump()
        return
      }
      if (req.url === '/slow') {
        req.resume()
        setTimeout(() => res.end('slow answer'), CLIENT_IDLE_MS * 2)
        return
      }
      const chunks: Buffer[] = []
      req.on('data', (c) => chunks.push(c))
      req.on('end', () => {
        res.writeHead(200, { 'x-upstream': 'blue' })
        res.end(`got ${Buffer.concat(chunks).length}`)
      })
    })
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: app.url }] } },
      timeouts: { clientIdleMs: CLIENT_IDLE_MS },
    })
    load = steadyLoad({ url: proxy.url, concurrency: 4, path: '/load' })
  })
  afterAll(async () => {
    loadResult ??= load.stop()
    await loadResult
    await proxy.stop()
    await app.close()
  })

  it('oversized headers: 431 and the connection closed', async () => {
    const r = await rawExchange(proxy.port, [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`])
    expect(r.status).toBe(431)
    expect(JSON.parse(r.body)).toEqual({ error: { code: 'SLUICE_BAD_REQUEST', message: 'the request head is larger than limits.maxHeaderBytes' } })
    expect(r.headers.connection).toBe('close')
    expect(r.closed).toBe(true)
  })

  it('an Expect other than 100-continue: 417 with the JSON body, nothing forwarded, and the connection serves on', async () => {
    const r = await rawExchange(
      proxy.port,
      [
        'POST /expects HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 5\r\n\r\nhello',
        'GET /after-expect HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      ],
      { timeoutMs: 2_000 },
    )
    expect(r.status).toBe(417)
    const length = Number(r.headers['content-length'])
    expect(JSON.parse(r.body.slice(0, length)).error).toMatchObject({ code: 'SLUICE_EXPECTATION_FAILED', requestId: expect.any(String) })
    // The body was read as the refused request's, not as the next request.
    expect(r.body.slice(length)).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n(?:[0-9a-f]+\r\n)?got 0/)
    expect(paths.has('/expects')).toBe(false)
    // The tests below count what reached the upstream.
    paths.delete('/after-expect')
  })

  it('Content-Length together with Transfer-Encoding: 400, nothing forwarded', async () => {
    const r = await rawExchange(proxy.port, [
      'POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n',
    ])
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body).error.code).toBe('SLUICE_BAD_REQUEST')
    expect(r.closed).toBe(true)
    expect([...paths].filter((p) => p !== '/load')).toEqual([])
  })

  it('HTTP/1.1 without Host: 400 with the JSON error, nothing forwarded; HTTP/1.0 without Host is served', async () => {
    const r = await rawExchange(proxy.port, ['GET /no-host HTTP/1.1\r\n\r\n'])
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body).error).toEqual({
      code: 'SLUICE_BAD_REQUEST',
      message: 'an HTTP/1.1 request must carry a Host header',
      requestId: expect.any(String),
    })
    expect(r.closed).toBe(true)
    expect(paths.has('/no-host')).toBe(false)
    const old = await rawExchange(proxy.port, ['GET /old-client HTTP/1.0\r\n\r\n'])
    expect(old.status).toBe(200)
    expect(paths.has('/old-client')).toBe(true)
  })

  it('garbage bytes instead of HTTP: 400 and the connection closed', async () => {
    const r = await rawExchange(proxy.port, [
      Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x0d, 0x0a]),
    ])
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body).error.code).toBe('SLUICE_BAD_REQUEST')
    expect(r.closed).toBe(true)
  })

  it('a client that stalls mid-body is closed after timeouts.clientIdleMs and its upstream request ends', async () => {
    const r = await rawExchange(
      proxy.port,
      ['PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789'],
      { timeoutMs: CLIENT_IDLE_MS * 10 },
    )
    expect(r.closed).toBe(true)
    expect(uploads).toHaveLength(1)
    await expect
      .poll(() => uploads[0]!.destroyed || uploads[0]!.complete, { message: 'the upstream request to end' })
      .toBeTruthy()
    expect(uploads[0]!.complete).toBe(false)
  })

  it('a client that stalls mid-headers is closed', async () => {
    const r = await rawExchange(proxy.port, ['GET / HTTP/1.1\r\nHost: a\r\nX-Partial: '], {
      timeoutMs: CLIENT_IDLE_MS * 10,
    })
    expect(r.closed).toBe(true)
  })

  it('a client that stops reading a response is closed and the upstream response ends', async () => {
    const socket = connect(proxy.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write('GET /endless HTTP/1.1\r\nHost: a\r\n\r\n')
    socket.pause() // reads nothing: the proxy's writes back up
    try {
      await expect
        .poll(() => endlessClosed, { message: 'the upstream response to be closed', timeout: CLIENT_IDLE_MS * 20 })
        .toBeTruthy()
    } finally {
      socket.destroy()
    }
  })

  it('an upstream slower than clientIdleMs still gets its answer to the client', async () => {
    const res = await fetch(`${proxy.url}/slow`)
    expect({ status: res.status, body: await res.text() }).toEqual({ status: 200, body: 'slow answer' })
  })

  it('the steady load saw no failure, and nothing is left open or in flight', async () => {
    loadResult = load.stop()
    const result = await loadResult
    expect(result.failures).toEqual([])
    expect(result.ok).toBeGreaterThan(0)
    await expect.poll(() => inflight(proxy), { message: 'in flight back to 0' }).toBe(0)
    await expect
      .poll(async () => (await connections(proxy)), {
        message: 'no client connection left open',
        timeout: 5 * CLIENT_IDLE_MS,
      })
      .toBe(0)
  })
})
