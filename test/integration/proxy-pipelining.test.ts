import { connect, type Socket } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { connectProxy, connections, inflight } from '../helpers/raw-http.js'
import { pipelineWrites } from '../helpers/request-streams.js'
import { proxyTlsListen, type TestCa, testCa } from '../helpers/tls-certs.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { startWsUpstream, type WsUpstream } from '../helpers/ws-upstream.js'

const PIPELINED = 5000
/** An answer larger than a loopback connection's socket buffers, so that a client that does not read holds it up. */
const BIG = 'b'.repeat(8 * 1024 * 1024)
/** A request body larger than those buffers: the upstream has answered long before it could all be sent. */
const UPLOAD = 'u'.repeat(4 * 1024 * 1024)

/**
 * README "Proxying rules": a client connection has at most one request in
 * flight upstream; pipelined requests are forwarded one after the other and
 * answered in order, as nginx does.
 */
describe('pipelined requests on one client connection', () => {
  let app: TestUpstream
  let proxy: TestProxy
  let upstreamConnections = 0
  let concurrent = 0
  let maxConcurrent = 0

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      req.resume()
      concurrent++
      maxConcurrent = Math.max(maxConcurrent, concurrent)
      setImmediate(() => {
        concurrent--
        res.end(`${req.url!.slice('/delay?n='.length)};`)
      })
    })
    app.server.on('connection', () => upstreamConnections++)
    proxy = await startProxy({ versions: { blue: { instances: [{ url: app.url }] } } })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
  })

  it(`${PIPELINED} pipelined GET /delay open one upstream connection and are answered in order`, async () => {
    const socket = connect(proxy.port, '127.0.0.1')
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (text += d))
    await new Promise<void>((r) => socket.once('connect', r))
    const requests: string[] = []
    for (let i = 0; i < PIPELINED; i++) requests.push(`GET /delay?n=${i} HTTP/1.1\r\nHost: a\r\n\r\n`)
    socket.write(requests.join(''))
    try {
      // Stops early once a second upstream connection opened: the assertions below then say so.
      await expect
        .poll(
          () =>
            upstreamConnections > 1 ||
            (text.split('HTTP/1.1 200').length - 1 === PIPELINED && text.endsWith(`${PIPELINED - 1};`)),
          { message: 'every answer', timeout: 30_000 },
        )
        .toBeTruthy()
    } finally {
      socket.destroy()
    }
    const bodies = [...text.matchAll(/\r\n\r\n(\d+);/g)].map((m) => Number(m[1]))
    expect(bodies).toEqual(Array.from({ length: PIPELINED }, (_, i) => i))
    expect({ upstreamConnections, maxConcurrent }).toEqual({ upstreamConnections: 1, maxConcurrent: 1 })
    await expect.poll(() => inflight(proxy), { message: 'in flight back to 0' }).toBe(0)
  })
})

/**
 * README "Proxying rules": bytes that do not parse behind a request in
 * flight end the connection after that request's answer, and the requests
 * read between are never forwarded; CONNECT gets 405 and its connection
 * ends. Either way the connection must then really go: the client's own
 * close is read, and a client that keeps its side open in silence is closed
 * after timeouts.clientIdleMs, so that no such connection holds a slot of
 * limits.clientConnections or a file descriptor for good.
 */
describe('the connection goes after the last answer the proxy gives on it', () => {
  const IDLE_MS = 500
  let app: TestUpstream
  let proxy: TestProxy
  const seen: string[] = []

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      req.resume()
      seen.push(req.url!)
      setTimeout(() => res.end(`answer ${req.url}`), 150)
    })
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: app.url }] } },
      timeouts: { clientIdleMs: IDLE_MS },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
  })

  /** Writes `bytes`, waits for the proxy to end the connection, and returns what came back; then checks it goes. */
  async function lastAnswer(bytes: string, client: 'closes' | 'stays silent'): Promise<string> {
    seen.length = 0
    const socket = connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: client === 'stays silent' })
    let text = ''
    let ended = false
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (text += d))
    socket.on('end', () => (ended = true))
    socket.on('error', () => {})
    await new Promise<void>((r) => socket.once('connect', r))
    socket.write(bytes)
    try {
      await expect.poll(() => ended, { message: 'the proxy ends the connection' }).toBe(true)
      // The client's close is read at once; a silent client is closed after clientIdleMs.
      await expect
        .poll(() => connections(proxy), { message: 'no client connection left open', timeout: IDLE_MS * 2 + 1000 })
        .toBe(0)
    } finally {
      socket.destroy()
    }
    return text
  }

  // The malformed part is a chunked body, past its head: Node's head deadline (headersTimeout) no longer applies.
  const broken =
    'GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /between HTTP/1.1\r\nHost: a\r\n\r\n' +
    'POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n'

  for (const client of ['closes', 'stays silent'] as const) {
    it(`malformed bytes behind pipelined requests: the one in flight is answered, the one between never forwarded, and the connection goes (the client ${client})`, async () => {
      const text = await lastAnswer(broken, client)
      expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nanswer \/first$/)
      expect(seen).toEqual(['/first'])
    })

    it(`CONNECT: 405, and the connection goes (the client ${client})`, async () => {
      const text = await lastAnswer('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', client)
      expect(text).toMatch(/^HTTP\/1\.1 405 Method Not Allowed\r\n/)
      expect(seen).toEqual([])
    })
  }
})

/**
 * README "Proxying rules": a request that takes the connection from the
 * HTTP parser (a WebSocket handshake, an upgrade to anything else, CONNECT)
 * can arrive pipelined behind requests still being answered. Its answer
 * comes after theirs, as every pipelined answer does, and the proxy keeps
 * serving.
 */
const TAKEOVER_SETUPS = [
  { mode: 'relay', tls: false },
  { mode: 'tunnel', tls: false },
  { mode: 'relay', tls: true },
] as const

describe.each(TAKEOVER_SETUPS)('an upgrade or CONNECT pipelined behind a request is answered after it (websocket.mode $mode, TLS $tls)', ({ mode, tls }) => {
  let app: TestUpstream
  let ws: WsUpstream
  let proxy: TestProxy
  let ca: TestCa | undefined

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      req.resume()
      if (req.url === '/big') return void res.end(BIG)
      // An upload refused at its head, before its body is read (the property's early answers).
      if (req.url!.startsWith('/early')) {
        res.statusCode = 413
        return void res.end(`early ${req.url}`)
      }
      // ?ms=N answers after N ms, for the property's varied timing.
      const ms = /[?&]ms=(\d+)/.exec(req.url!)?.[1]
      setTimeout(() => res.end(`answer ${req.url}`), ms === undefined ? 150 : Number(ms))
    })
    ws = await startWsUpstream('ws')
    if (tls) ca = await testCa()
    proxy = await startProxy({
      ...(await proxyTlsListen(ca)),
      versions: { blue: { instances: [{ url: app.url }] }, ws: { instances: [{ url: ws.url }] } },
      weights: { blue: 100 },
      overrides: [{ match: { header: 'x-version', value: 'ws' }, version: 'ws' }],
      websocket: { mode },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
    await ws.close()
    await ca?.close()
  })

  /** A client connection to the proxy, over TLS when the listener has it. */
  const open = (): Promise<Socket> => connectProxy(proxy.port, ca)

  const FIRST = 'GET /first HTTP/1.1\r\nHost: a\r\n\r\n'
  const handshake = (key: string) =>
    `GET /chat HTTP/1.1\r\nHost: a\r\nX-Version: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`

  /** Writes `bytes` in one segment and returns the connection once `done` holds for what came back. */
  async function pipelined(bytes: string, done: (text: string) => boolean) {
    const socket = await open()
    const got = { text: '', ended: false }
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (got.text += d))
    socket.on('end', () => (got.ended = true))
    socket.write(bytes)
    await expect.poll(() => done(got.text), { message: 'the answers' }).toBe(true)
    return { socket, got }
  }

  /** The proxy still serves another client afterwards. */
  async function stillServes(): Promise<void> {
    const socket = await open()
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (text += d))
    const ended = new Promise((r) => socket.once('end', r))
    // Not ended: node:http takes a client's half-close for an abort.
    socket.write('GET /after?ms=0 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
    await ended
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nanswer \/after\?ms=0$/)
  }

  it('CONNECT: the request before it is answered, then 405, and the connection ends', async () => {
    const { socket, got } = await pipelined(`${FIRST}CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n`, (t) =>
      t.includes('405'),
    )
    try {
      expect(got.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nanswer \/firstHTTP\/1\.1 405 Method Not Allowed\r\n/)
      await expect.poll(() => got.ended).toBe(true)
    } finally {
      socket.destroy()
    }
    await stillServes()
  })

  it('an upgrade to h2c, declined: the request before it is answered, then it is, and the connection ends', async () => {
    const { socket, got } = await pipelined(
      `${FIRST}GET /second HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n`,
      (t) => t.endsWith('answer /second'),
    )
    try {
      expect(got.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nanswer \/firstHTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n/i)
      await expect.poll(() => got.ended).toBe(true)
    } finally {
      socket.destroy()
    }
    await stillServes()
  })

  it('an upgrade to h2c, declined, answered with more than the socket buffers hold (curl --http2): all of it arrives', async () => {
    const { socket, got } = await pipelined(
      'GET /big HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n',
      (t) => answersIn(t).length === 1,
    )
    try {
      expect(answersIn(got.text)[0]!.length).toBe(4 + BIG.length)
      await expect.poll(() => got.ended).toBe(true)
    } finally {
      socket.destroy()
    }
  })

  it('a WebSocket handshake: the request before it is answered, then 101, and the WebSocket relays', async () => {
    const { socket, got } = await pipelined(`${FIRST}${handshake('dGhlIHNhbXBsZSBub25jZQ==')}`, (t) => {
      const at = t.indexOf('HTTP/1.1 101')
      return at >= 0 && t.includes('\r\n\r\n', at)
    })
    try {
      expect(got.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nanswer \/firstHTTP\/1\.1 101 Switching Protocols\r\n/)
      // A masked text frame "hi" (mask key 0): the upstream echoes it unmasked.
      socket.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x68, 0x69]))
      await expect.poll(() => got.text.endsWith('\x81\x02hi'), { message: 'the echo' }).toBe(true)
    } finally {
      socket.destroy()
    }
    await stillServes()
  })

  it('a WebSocket handshake behind answers larger than the socket buffers, which the client reads only later: the answers whole, then 101, and the WebSocket relays', async () => {
    const socket = await open()
    // Not reading: the first answer fills the socket buffers, and node:http pauses the connection until they drain.
    socket.pause()
    const bigGet = 'GET /big HTTP/1.1\r\nHost: a\r\n\r\n'
    socket.write(bigGet)
    try {
      await expect.poll(() => socket.readableLength, { message: 'answers waiting for the client' }).toBeGreaterThan(0)
      // Parsed while node:http holds the connection paused for the answer in flight, the handshake is handed over paused.
      let handedOver = false
      proxy.sluice.listener.server.once('upgrade', () => (handedOver = true))
      socket.write(`${bigGet}${handshake('dGhlIHNhbXBsZSBub25jZQ==')}`)
      await expect.poll(() => handedOver, { message: 'the handshake handed over' }).toBe(true)
      const chunks: Buffer[] = []
      let length = 0
      socket.on('data', (d: Buffer) => {
        chunks.push(d)
        length += d.length
      })
      socket.resume()
      const text = () => Buffer.concat(chunks, length).toString('latin1')
      await expect.poll(() => answersIn(text()).length, { message: 'both answers, then the 101' }).toBe(3)
      expect(answersIn(text()).map((a) => a.slice(0, 3))).toEqual(['200', '200', '101'])
      expect(answersIn(text())[0]!.length).toBe(4 + BIG.length)
      // A masked text frame "hi" (mask key 0): the upstream echoes it unmasked.
      socket.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x68, 0x69]))
      await expect.poll(() => text().endsWith('\x81\x02hi'), { message: 'the echo' }).toBe(true)
    } finally {
      socket.destroy()
    }
    await stillServes()
  })

  /** What the last request of a pipeline must get (mostly one that takes the connection): a status, and for a served one its body. */
  const TAKERS = {
    // None: pipelining alone, which over TLS once closed the connection when records arrived together.
    'plain request': ['GET /last?ms=0 HTTP/1.1\r\nHost: a\r\n\r\n', '200 answer /last?ms=0'],
    CONNECT: ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', '405'],
    'declined h2c': [
      'GET /h2c?ms=0 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n',
      '200 answer /h2c?ms=0',
    ],
    WebSocket: [handshake('dGhlIHNhbXBsZSBub25jZQ=='), '101'],
    'malformed WebSocket': [handshake('not-a-key'), '400'],
  } as const

  it('property: behind pipelined requests of any timing (uploads answered before their body among them), cut anywhere, every answer comes in request order, the taker last, and the connection is read to its close', async () => {
    await fc.assert(
      fc.asyncProperty(
        // A delay in ms, or -1: an upload the upstream refuses before reading its body.
        fc.array(fc.oneof({ arbitrary: fc.integer({ min: 0, max: 20 }), weight: 3 }, fc.constant(-1)), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(...(Object.keys(TAKERS) as (keyof typeof TAKERS)[])),
        fc.array(fc.nat(), { maxLength: 4 }),
        async (delays, taker, cuts) => {
          const requests = delays.map((ms, i) =>
            ms < 0
              ? `POST /early${i} HTTP/1.1\r\nHost: a\r\nContent-Length: ${UPLOAD.length}\r\n\r\n${UPLOAD}`
              : `GET /p${i}?ms=${ms} HTTP/1.1\r\nHost: a\r\n\r\n`,
          )
          const expected = delays.map((ms, i) => (ms < 0 ? `413 early /early${i}` : `200 answer /p${i}?ms=${ms}`))
          requests.push(TAKERS[taker][0])
          expected.push(TAKERS[taker][1])
          // Others' kept-alive connections (fetch in the tests above) may be open, or close meanwhile.
          const before = await connections(proxy)
          const socket = await open()
          let text = ''
          socket.setEncoding('latin1')
          socket.on('data', (d: string) => (text += d))
          try {
            for (const w of pipelineWrites(requests, cuts)) {
              socket.write(w)
              await new Promise((r) => setImmediate(r))
            }
            await expect
              .poll(() => answersIn(text).length, { message: `${expected.length} answers` })
              .toBe(expected.length)
            expect(answersIn(text), JSON.stringify(answersIn(text).map((a) => a.slice(0, 60)))).toEqual(expected)
            if (taker === 'WebSocket') {
              // The WebSocket reads what the client sends: a masked text frame "hi" (mask key 0), echoed unmasked.
              socket.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x68, 0x69]))
              await expect.poll(() => text.endsWith('\x81\x02hi'), { message: 'the echo' }).toBe(true)
            }
          } finally {
            socket.destroy()
          }
          // The proxy reads the client's close, whatever took the connection.
          await expect
            .poll(async () => (await connections(proxy)) <= before, { message: 'the connection closed on the proxy too' })
            .toBe(true)
        },
      ),
      { numRuns: 15, endOnFailure: true },
    )
    await stillServes()
  })

  it('a malformed WebSocket handshake: the request before it is answered, then 400, and the connection ends', async () => {
    const { socket, got } = await pipelined(`${FIRST}${handshake('not-a-key')}`, (t) => t.includes('400'))
    try {
      expect(got.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nanswer \/firstHTTP\/1\.1 400 Bad Request\r\n/)
      await expect.poll(() => got.ended).toBe(true)
    } finally {
      socket.destroy()
    }
    await stillServes()
  })
})

/**
 * The answers on a connection, each as "status body" for an upstream's
 * answer and "status" for the proxy's own (JSON) or a 101 (which ends the
 * HTTP part). Heads are read up to the blank line, bodies by Content-Length.
 */
function answersIn(text: string): string[] {
  const out: string[] = []
  let at = 0
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at)
    if (end < 0) return out
    const head = text.slice(at, end)
    const status = head.slice(9, 12)
    if (status === '101') {
      out.push(status)
      return out
    }
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0)
    if (text.length < end + 4 + length) return out
    const body = text.slice(end + 4, end + 4 + length)
    out.push(/\r\ncontent-type: *application\/json/i.test(head) ? status : `${status} ${body}`)
    at = end + 4 + length
  }
}
