import { constants as h2, createServer as createH2cServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2'
import type { AddressInfo, Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { connectProxy } from '../helpers/raw-http.js'
import { proxyTlsListen, type TestCa, testCa } from '../helpers/tls-certs.js'
import { startUpstream } from '../helpers/upstream.js'

/** Larger than a loopback connection's socket buffers: the upstream answers long before it could all be sent. */
const BODY = 'u'.repeat(8 * 1024 * 1024)
const REQUEST_BODY_MS = 1_000

/**
 * An answer before the request body ended: an app refusing an upload at its
 * head (413, 401), or the proxy's own 502 when the upstream broke off while
 * the body was coming. The client sends the rest of its body, as HTTP/1.1
 * has it do, and then its next request on the same connection: that request
 * is answered (the rest is read and dropped), and a client that never sends
 * the rest loses the connection at timeouts.requestBodyMs.
 */
const SETUPS = [
  { tls: false, upstream: 'http1' },
  { tls: true, upstream: 'http1' },
  // undici over HTTP/2 lets go of the body before the answer ends, not after.
  { tls: false, upstream: 'h2c' },
] as const

describe.each(SETUPS)('an answer before the request body ended (TLS $tls, upstream $upstream)', ({ tls, upstream }) => {
  let app: { url: string; close(): Promise<void> }
  let proxy: TestProxy
  let ca: TestCa | undefined
  const seen: string[] = []

  beforeAll(async () => {
    app = upstream === 'http1' ? await startUpstream('blue', answer) : await startH2cUpstream()
    if (tls) ca = await testCa()
    proxy = await startProxy({
      ...(await proxyTlsListen(ca)),
      versions: { blue: { instances: [{ url: app.url }], protocol: upstream } },
      timeouts: { requestBodyMs: REQUEST_BODY_MS },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
    await ca?.close()
  })

  /** The app: refuses every upload at its head, answers the rest; /reset breaks off once the body starts. */
  function answer(req: import('node:http').IncomingMessage | Http2ServerRequest, res: import('node:http').ServerResponse | Http2ServerResponse): void {
    seen.push(req.url!)
    if (req.url === '/reset') {
      // Broken off mid-body: the proxy answers 502 itself.
      req.once('data', () => ('stream' in req ? req.stream.close(h2.NGHTTP2_INTERNAL_ERROR) : req.socket.destroy()))
      return
    }
    // The body is never read: the answer goes before any of it.
    const text = req.method === 'POST' ? 'too large' : `answer ${req.url}`
    ;(res as import('node:http').ServerResponse).writeHead(req.method === 'POST' ? 413 : 200, { 'content-length': text.length })
    res.end(text)
  }

  async function startH2cUpstream(): Promise<{ url: string; close(): Promise<void> }> {
    const server = createH2cServer(answer)
    const sessions = new Set<import('node:http2').ServerHttp2Session>()
    server.on('session', (s) => sessions.add(s))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((r) => {
          server.close(() => r())
          for (const s of sessions) s.destroy()
        }),
    }
  }

  async function open(): Promise<{ socket: Socket; got: { text: string; closed: boolean } }> {
    const socket = await connectProxy(proxy.port, ca)
    const got = { text: '', closed: false }
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (got.text += d))
    socket.on('close', () => (got.closed = true))
    return { socket, got }
  }

  const post = (path: string) => `POST ${path} HTTP/1.1\r\nHost: a\r\nContent-Length: ${BODY.length}\r\n\r\n`
  const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])

  it.each([
    ['Content-Length', post('/upload') + BODY],
    ['chunked', `POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`],
  ])('an upload refused at its head (%s body), the next request pipelined behind it: both answered', async (_, upload) => {
    const { socket, got } = await open()
    try {
      socket.write(`${upload}GET /after-pipelined HTTP/1.1\r\nHost: a\r\n\r\n`)
      await expect.poll(() => got.text.endsWith('answer /after-pipelined'), { message: got.text }).toBe(true)
      expect(statuses(got.text)).toEqual(['413', '200'])
      expect(got.closed).toBe(false)
    } finally {
      socket.destroy()
    }
  })

  it('an upload refused at its head: the client reads the answer, sends the rest of its body, then its next request, on one connection', async () => {
    const { socket, got } = await open()
    try {
      socket.write(post('/upload') + BODY.slice(0, 1024))
      await expect.poll(() => statuses(got.text)).toEqual(['413'])
      socket.write(BODY.slice(1024))
      socket.write('GET /after-body HTTP/1.1\r\nHost: a\r\n\r\n')
      await expect.poll(() => got.text.endsWith('answer /after-body'), { message: got.text }).toBe(true)
      expect(statuses(got.text)).toEqual(['413', '200'])
    } finally {
      socket.destroy()
    }
  })

  it('the upstream broke off mid-body: 502, and the request behind the body is answered', async () => {
    const { socket, got } = await open()
    try {
      socket.write(`${post('/reset')}${BODY}GET /after-reset HTTP/1.1\r\nHost: a\r\n\r\n`)
      await expect.poll(() => got.text.endsWith('answer /after-reset'), { message: got.text }).toBe(true)
      expect(statuses(got.text)).toEqual(['502', '200'])
    } finally {
      socket.destroy()
    }
  })

  it('a client that never sends the rest of its body loses the connection at timeouts.requestBodyMs, and nothing else reaches the upstream', async () => {
    const before = seen.length
    const { socket, got } = await open()
    try {
      const started = performance.now()
      socket.write(post('/upload') + BODY.slice(0, 1024))
      await expect.poll(() => statuses(got.text)).toEqual(['413'])
      await expect.poll(() => got.closed, { timeout: REQUEST_BODY_MS + 3_000 }).toBe(true)
      expect(performance.now() - started).toBeGreaterThanOrEqual(REQUEST_BODY_MS - 50)
      expect(seen.slice(before)).toEqual(['/upload'])
    } finally {
      socket.destroy()
    }
  })
})
