import type { IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { inflight, parseReply, type RawReply, rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const CLIENT_IDLE_MS = 1000
const REQUEST_BODY_MS = 600

/**
 * Writes `head`, then one byte of `drip` every `everyMs` (each gap well
 * under clientIdleMs), until the proxy closes the connection. Answers what
 * came back and how long the connection lived.
 */
function drip(port: number, head: string, everyMs: number): Promise<RawReply & { ms: number }> {
  return new Promise((resolve) => {
    const started = performance.now()
    const socket = connect(port, '127.0.0.1')
    const got: Buffer[] = []
    const timer = setInterval(() => {
      if (socket.writable) socket.write('x')
    }, everyMs)
    socket.on('connect', () => socket.write(head))
    socket.on('data', (d) => got.push(d))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(timer)
      resolve({ ...parseReply(Buffer.concat(got).toString('latin1'), true), ms: performance.now() - started })
    })
  })
}

describe('slow and broken request bodies, slow heads', () => {
  let app: TestUpstream
  let proxy: TestProxy
  const uploads: IncomingMessage[] = []

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      uploads.push(req)
      if (req.url === '/early') {
        // Answers before reading the body, and keeps the response open.
        res.write('early answer, ')
        return
      }
      const chunks: Buffer[] = []
      req.on('data', (c) => chunks.push(c))
      req.on('end', () => res.end(`got ${Buffer.concat(chunks).length}`))
    })
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: app.url }] } },
      // One failure would eject the only instance: a client's fault must not count.
      outlier: { consecutiveFailures: 1 },
      timeouts: { clientIdleMs: CLIENT_IDLE_MS, requestBodyMs: REQUEST_BODY_MS },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
  })

  it('a body still arriving after timeouts.requestBodyMs: 408, the upstream request cancelled, not an upstream failure', async () => {
    const r = await drip(proxy.port, 'POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n', 100)
    expect(r.status).toBe(408)
    expect(JSON.parse(r.body)).toEqual({
      error: { code: 'SLUICE_REQUEST_TIMEOUT', message: 'the request body did not arrive in time', requestId: expect.any(String) },
    })
    expect(r.ms / REQUEST_BODY_MS).toBeGreaterThanOrEqual(0.95)
    expect(r.ms / REQUEST_BODY_MS).toBeLessThan(2)
    const upload = uploads.at(-1)!
    await expect.poll(() => upload.destroyed, { message: 'the upstream request to be cancelled' }).toBeTruthy()
    expect(upload.complete).toBe(false)
    const blue = proxy.sluice.versions[0]!
    expect({ ejected: blue.instances[0]!.ejected, errors: blue.errorsTotal }).toEqual({ ejected: false, errors: 0 })
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text()
    expect(metrics).toMatch(/sluice_requests_total\{version="blue",code="408"\} 1/)
  })

  it('a body still arriving after timeouts.requestBodyMs once the response started: the connection is closed', async () => {
    const r = await drip(proxy.port, 'POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n', 100)
    expect(r.status).toBe(200)
    expect(r.body).toContain('early answer, ')
    expect(r.ms / REQUEST_BODY_MS).toBeLessThan(2)
    const upload = uploads.at(-1)!
    await expect.poll(() => upload.destroyed, { message: 'the upstream request to be cancelled' }).toBeTruthy()
    expect(proxy.sluice.versions[0]!.errorsTotal).toBe(0)
  })

  it('a request head sent a byte at a time is closed within its deadline plus a second', async () => {
    // clientIdleMs is also the request head's deadline: each byte comes well within it, the whole head never does.
    const r = await drip(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ', 200)
    expect(r.ms).toBeGreaterThanOrEqual(CLIENT_IDLE_MS * 0.95)
    expect(r.ms).toBeLessThan(CLIENT_IDLE_MS + 1000)
    expect(r.status).toBe(408)
  })

  it('a chunked body with broken framing: 400 with the JSON error, the upstream request cancelled', async () => {
    const before = uploads.length
    const r = await rawExchange(proxy.port, [
      'POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
      'ZZ not a chunk size\r\n\r\n',
    ])
    expect(r.status).toBe(400)
    expect(JSON.parse(r.body)).toEqual({
      error: { code: 'SLUICE_BAD_REQUEST', message: 'malformed request body', requestId: expect.any(String) },
    })
    expect(r.closed).toBe(true)
    if (uploads.length > before)
      await expect.poll(() => uploads.at(-1)!.destroyed, { message: 'the upstream request to be cancelled' }).toBe(true)
    expect(proxy.sluice.versions[0]!.instances[0]!.ejected).toBe(false)
  })

  it('a whole body in time is forwarded, and nothing is left in flight', async () => {
    const r = await drip(proxy.port, 'POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\n', 100)
    expect({ status: r.status, body: r.body }).toEqual({ status: 200, body: 'got 3' })
    await expect.poll(() => inflight(proxy), { message: 'in flight back to 0' }).toBe(0)
  })
})
