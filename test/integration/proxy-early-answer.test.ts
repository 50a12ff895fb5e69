import { connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { type TestCa, testCa } from '../helpers/tls-certs.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

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
describe.each([{ tls: false }, { tls: true }])('an answer before the request body ended (TLS $tls)', ({ tls }) => {
  let app: TestUpstream
  let proxy: TestProxy
  let ca: TestCa | undefined
  const seen: string[] = []

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      seen.push(req.url!)
      if (req.url === '/reset') {
        // Broken off mid-body: the proxy answers 502 itself.
        req.once('data', () => req.socket.destroy())
        return
      }
      req.resume()
      if (req.method === 'POST') res.writeHead(413).end('too large')
      else res.end(`answer ${req.url}`)
    })
    let listen = {}
    if (tls) {
      ca = await testCa()
      const leaf = await ca.issue(['proxy.test'])
      listen = { listen: { host: '127.0.0.1', port: 0, tls: { cert: leaf.cert, key: leaf.key } } }
    }
    proxy = await startProxy({
      ...listen,
      versions: { blue: { instances: [{ url: app.url }] } },
      timeouts: { requestBodyMs: REQUEST_BODY_MS },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
    await ca?.close()
  })

  async function open(): Promise<{ socket: Socket; got: { text: string; closed: boolean } }> {
    const at = { port: proxy.port, host: '127.0.0.1' }
    const socket = ca === undefined ? connect(at) : tlsConnect({ ...at, ca: ca.rootPem, servername: 'proxy.test' })
    socket.on('error', () => {})
    await new Promise<void>((r) => socket.once(ca === undefined ? 'connect' : 'secureConnect', r))
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
