import type { ClientHttp2Session } from 'node:http2'
import { get as httpsGet } from 'node:https'
import { connect as tlsConnect } from 'node:tls'
import { Agent, request } from 'undici'
import { WebSocket } from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { blueGreen, type BlueGreen } from '../helpers/blue-green.js'
import { admin, startProxy } from '../helpers/proxy.js'
import { curl, h2Request, h2Session } from '../helpers/h2-client.js'
import { rawExchange, refusedUrl } from '../helpers/raw-http.js'
import { testCa, type IssuedCertificate, type TestCa } from '../helpers/tls-certs.js'
import type { UpstreamHandler } from '../helpers/upstream.js'
import { startUpstream } from '../helpers/upstream.js'
import { startWsUpstream } from '../helpers/ws-upstream.js'

/** Answers with what arrived (method, path, raw header pairs, body), and a trailer on /trailers. */
const echo: UpstreamHandler = (req, res, u) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    if (req.url === '/big') {
      const body = Buffer.alloc(4 << 20, 'x')
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
      res.end(body)
      return
    }
    if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
      res.write('part one, ')
      res.addTrailers({ 'x-checksum': 'abc123' })
      res.end('part two')
      return
    }
    const body = JSON.stringify({ name: u.name, method: req.method, url: req.url, raw: req.rawHeaders, body: Buffer.concat(chunks).toString() })
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      connection: 'keep-alive',
      'keep-alive': 'timeout=5',
      'x-upstream': u.name,
    })
    res.end(body)
  })
}

function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = []
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!])
  return out
}

/**
 * A CONNECT stream (RFC 9113 8.5: :method and :authority only) and its answer;
 * then the session still serves an ordinary request.
 */
async function connectOverH2(session: ClientHttp2Session): Promise<{ status: number; body: string; after: number }> {
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const stream = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' }, { endStream: false })
    let status = 0
    let body = ''
    stream.setEncoding('utf8')
    stream.on('response', (h) => (status = Number(h[':status'])))
    stream.on('data', (d: string) => (body += d))
    stream.on('error', reject)
    stream.on('close', () => resolve({ status, body }))
  })
  const after = await h2Request(session, '/after-connect')
  return { ...answer, after: after.status }
}

describe('TLS listener with HTTP/2 (README "TLS and HTTP/2")', () => {
  let ca: TestCa
  let leaf: IssuedCertificate
  let bg: BlueGreen
  let url: string
  let session: ClientHttp2Session

  beforeAll(async () => {
    ca = await testCa()
    leaf = await ca.issue(['proxy.test'])
    bg = await blueGreen(
      {
        listen: { host: '127.0.0.1', port: 0, http2: true, tls: { cert: leaf.cert, key: leaf.key } },
        weights: { blue: 100 },
        sticky: { keys: ['header:x-user-id'] },
      },
      { blue: echo, green: echo },
    )
    url = `https://127.0.0.1:${bg.proxy.port}`
    session = await h2Session(url, { ca: ca.rootPem, servername: 'proxy.test' })
  })
  afterAll(async () => {
    session?.close()
    await bg?.close()
    await ca?.close()
  })

  it('an h2 client reaches an HTTP/1.1 upstream: :authority becomes Host, no pseudo-header is forwarded, X-Forwarded-Proto is https', async () => {
    const r = await h2Request(session, '/p?q=1', { cookie: 'a=1', 'x-two': 'b' })
    expect(r.status).toBe(200)
    const seen = JSON.parse(r.body)
    expect(seen).toMatchObject({ name: 'blue', method: 'GET', url: '/p?q=1', body: '' })
    const got = pairs(seen.raw)
    expect(got.filter(([n]) => n.startsWith(':'))).toEqual([])
    // node's client sends the server name it was given as :authority.
    expect(got[0]).toEqual(['host', `proxy.test:${bg.proxy.port}`])
    expect(got).toContainEqual(['x-forwarded-proto', 'https'])
    expect(got).toContainEqual(['x-forwarded-host', `proxy.test:${bg.proxy.port}`])
    expect(got).toContainEqual(['x-two', 'b'])
  })

  it('hop-by-hop headers of the upstream answer never reach an HTTP/2 client', async () => {
    const r = await h2Request(session, '/hop')
    expect(r.headers['x-upstream']).toBe('blue')
    for (const name of ['connection', 'keep-alive', 'transfer-encoding', 'upgrade']) expect(r.headers[name]).toBeUndefined()
  })

  it('a request body sent without content-length reaches the upstream whole; a split cookie arrives as one header', async () => {
    const r = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ':path': '/upload', ':method': 'POST', cookie: 'a=1' }, { endStream: false })
      const chunks: Buffer[] = []
      s.on('data', (c: Buffer) => chunks.push(c))
      s.on('end', () => resolve(Buffer.concat(chunks).toString()))
      s.on('error', reject)
      s.write('one,')
      setImmediate(() => s.end('two'))
    })
    const seen = JSON.parse(r)
    expect(seen.body).toBe('one,two')
    expect(seen.method).toBe('POST')
    const cookies = await h2Request(session, '/c', { cookie: ['a=1', 'b=2'] })
    expect(pairs(JSON.parse(cookies.body).raw).filter(([n]) => n === 'cookie')).toEqual([['cookie', 'a=1; b=2']])
  })

  it('large bodies pass whole both ways over one stream (flow control and backpressure)', async () => {
    const down = await h2Request(session, '/big')
    expect(down.body.length).toBe(4 << 20)
    const up = await h2Request(session, '/upload-big', { ':method': 'POST' }, Buffer.alloc(3 << 20, 'y'))
    expect(JSON.parse(up.body).body.length).toBe(3 << 20)
  })

  it('response trailers of an HTTP/1.1 upstream reach the HTTP/2 client as trailers', async () => {
    const r = await h2Request(session, '/trailers')
    expect(r.body).toBe('part one, part two')
    expect(r.trailers['x-checksum']).toBe('abc123')
  })

  it('many concurrent streams on one session are served side by side', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => h2Request(session, `/n/${i}`)))
    expect(answers.map((a) => JSON.parse(a.body).url)).toEqual(Array.from({ length: 40 }, (_, i) => `/n/${i}`))
  })

  it('curl --http2 negotiates h2 by ALPN and gets the answer', async () => {
    const r = await curl(['--http2', '--cacert', ca.rootFile, '--resolve', `proxy.test:${bg.proxy.port}:127.0.0.1`, `https://proxy.test:${bg.proxy.port}/curl`])
    expect(r.version).toBe('2')
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body).url).toBe('/curl')
  })

  it('HTTP/1.1 over TLS on the same port (ALPN http/1.1, undici) keeps working, with X-Forwarded-Proto https', async () => {
    const agent = new Agent({ connect: { ca: ca.rootPem, servername: 'proxy.test' } })
    try {
      const r = await request(`${url}/one`, { dispatcher: agent })
      expect(r.statusCode).toBe(200)
      const seen = (await r.body.json()) as { raw: string[]; url: string }
      expect(seen.url).toBe('/one')
      expect(pairs(seen.raw)).toContainEqual(['x-forwarded-proto', 'https'])
      const r2 = await curl(['--http1.1', '--cacert', ca.rootFile, '--resolve', `proxy.test:${bg.proxy.port}:127.0.0.1`, `https://proxy.test:${bg.proxy.port}/c11`])
      expect(r2.version).toBe('1.1')
      expect(r2.status).toBe(200)
    } finally {
      await agent.close()
    }
  })

  it('refuses TLS 1.1 and older', async () => {
    const err = await new Promise<Error | undefined>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: bg.proxy.port, ca: ca.rootPem, servername: 'proxy.test', maxVersion: 'TLSv1.1', minVersion: 'TLSv1' })
      s.once('secureConnect', () => {
        s.destroy()
        resolve(undefined)
      })
      s.once('error', resolve)
    })
    expect(err).toBeInstanceOf(Error)
  })

  it('blue/green weights and sticky keys are honoured for HTTP/2 requests', async () => {
    expect((await admin(bg.proxy, 'PUT', '/v1/weights', { blue: 50, green: 50 })).status).toBe(200)
    try {
      const answers = await Promise.all(Array.from({ length: 400 }, (_, i) => h2Request(session, `/w/${i}`)))
      const green = answers.filter((a) => a.headers['x-upstream'] === 'green').length
      expect(green).toBeGreaterThan(140)
      expect(green).toBeLessThan(260)
      // A sticky key keeps its version over HTTP/2 as over HTTP/1.1.
      for (const user of ['u1', 'u2', 'u3', 'u4']) {
        const seen = await Promise.all(Array.from({ length: 10 }, () => h2Request(session, '/s', { 'x-user-id': user })))
        expect(new Set(seen.map((a) => a.headers['x-upstream'])).size).toBe(1)
      }
    } finally {
      await admin(bg.proxy, 'PUT', '/v1/weights', { blue: 100, green: 0 })
    }
  })

  it("the proxy's own answers (503 with the JSON body and request id) work over HTTP/2", async () => {
    expect((await admin(bg.proxy, 'POST', '/v1/drain', { version: 'blue' })).status).toBe(200)
    expect((await admin(bg.proxy, 'POST', '/v1/drain', { version: 'green' })).status).toBe(200)
    try {
      const r = await h2Request(session, '/none', { 'x-request-id': 'rid-1' })
      expect(r.status).toBe(503)
      expect(r.headers['content-type']).toBe('application/json')
      expect(r.headers.connection).toBeUndefined()
      expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'SLUICE_NO_USABLE_INSTANCE', requestId: 'rid-1' } })
    } finally {
      await admin(bg.proxy, 'POST', '/v1/undrain', { version: 'blue' })
      await admin(bg.proxy, 'POST', '/v1/undrain', { version: 'green' })
    }
  })

  it('an Expect other than 100-continue gets 417 with the JSON body, over HTTP/2 and over HTTP/1.1 on the same port', async () => {
    const h2 = await h2Request(session, '/expects', { expect: 'teapot' })
    expect(h2.status).toBe(417)
    expect(JSON.parse(h2.body).error.code).toBe('SLUICE_EXPECTATION_FAILED')
    // undici refuses to send Expect; node:https does.
    const h1 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsGet(`${url}/expects`, { ca: ca.rootPem, servername: 'proxy.test', headers: { expect: 'teapot' } }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      req.on('error', reject)
    })
    expect(h1.status).toBe(417)
    expect(JSON.parse(h1.body).error.code).toBe('SLUICE_EXPECTATION_FAILED')
  })

  it('CONNECT over HTTP/2 gets 405 with the JSON body, as over HTTP/1.1; the session serves on', async () => {
    const r = await connectOverH2(session)
    expect(r.status).toBe(405)
    expect(JSON.parse(r.body).error.code).toBe('SLUICE_METHOD_NOT_ALLOWED')
    expect(r.after).toBe(200)
  })

  it('a request head over limits.maxHeaderBytes gets 431 over HTTP/2 too', async () => {
    const r = await h2Request(session, '/big', { 'x-big': 'a'.repeat(20_000) })
    expect(r.status).toBe(431)
    expect(JSON.parse(r.body).error.code).toBe('SLUICE_BAD_REQUEST')
  })
})

describe('h2c listener (http2 without tls)', () => {
  let bg: BlueGreen

  beforeAll(async () => {
    bg = await blueGreen({ listen: { host: '127.0.0.1', port: 0, http2: true }, weights: { blue: 100 } }, { blue: echo, green: echo })
  })
  afterAll(async () => {
    await bg?.close()
  })

  it('an h2c client by prior knowledge (node and curl) reaches the upstream, X-Forwarded-Proto http', async () => {
    const session = await h2Session(bg.proxy.url)
    try {
      const r = await h2Request(session, '/h2c', { 'x-a': '1' })
      expect(r.status).toBe(200)
      const seen = JSON.parse(r.body)
      expect(seen.url).toBe('/h2c')
      expect(pairs(seen.raw)).toContainEqual(['x-forwarded-proto', 'http'])
      expect(pairs(seen.raw).filter(([n]) => n.startsWith(':'))).toEqual([])
    } finally {
      session.close()
    }
    const c = await curl(['--http2-prior-knowledge', `${bg.proxy.url}/curl-h2c`])
    expect(c.version).toBe('2')
    expect(JSON.parse(c.body).url).toBe('/curl-h2c')
  })

  it('an Expect other than 100-continue gets 417 with the JSON body over h2c too', async () => {
    const session = await h2Session(bg.proxy.url)
    try {
      const r = await h2Request(session, '/expects', { expect: 'teapot' })
      expect(r.status).toBe(417)
      expect(JSON.parse(r.body).error.code).toBe('SLUICE_EXPECTATION_FAILED')
      expect((await h2Request(session, '/after-expect')).status).toBe(200)
    } finally {
      session.close()
    }
  })

  it('CONNECT over h2c gets 405 with the JSON body; the session serves on', async () => {
    const session = await h2Session(bg.proxy.url)
    try {
      const r = await connectOverH2(session)
      expect(r.status).toBe(405)
      expect(JSON.parse(r.body).error.code).toBe('SLUICE_METHOD_NOT_ALLOWED')
      expect(r.after).toBe(200)
    } finally {
      session.close()
    }
  })

  it("the proxy's own 502 and 504 reach an h2c client as the JSON error", async () => {
    const slow = await startUpstream('slow', () => {})
    const refused = await refusedUrl()
    const p502 = await startProxy({ listen: { host: '127.0.0.1', port: 0, http2: true }, versions: { blue: { instances: [{ url: refused }] } } })
    const p504 = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true },
      versions: { blue: { instances: [{ url: slow.url }] } },
      timeouts: { upstreamMs: 200 },
    })
    const s502 = await h2Session(p502.url)
    const s504 = await h2Session(p504.url)
    try {
      const a = await h2Request(s502, '/x')
      expect(a.status).toBe(502)
      expect(JSON.parse(a.body).error.code).toBe('SLUICE_UPSTREAM_FAILED')
      const b = await h2Request(s504, '/x')
      expect(b.status).toBe(504)
      expect(JSON.parse(b.body).error.code).toBe('SLUICE_UPSTREAM_TIMEOUT')
    } finally {
      s502.close()
      s504.close()
      await p502.stop()
      await p504.stop()
      await slow.close()
    }
  })

  it('HTTP/1.1 clients on the same port are still answered (undici, curl, a raw request)', async () => {
    const r = await request(`${bg.proxy.url}/plain`)
    expect(r.statusCode).toBe(200)
    expect(((await r.body.json()) as { url: string }).url).toBe('/plain')
    const c = await curl(['--http1.1', `${bg.proxy.url}/curl-11`])
    expect(c.version).toBe('1.1')
    expect(c.status).toBe(200)
    const raw = await rawExchange(bg.proxy.port, ['PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'])
    expect(raw.status).toBe(200)
    expect(JSON.parse(raw.body)).toMatchObject({ method: 'PUT', body: 'ok' })
  })
})

describe('WebSockets and clients without ALPN on the TLS listener', () => {
  it('wss:// upgrades over HTTP/1.1 and relays messages; a TLS client without ALPN is answered in HTTP/1.1', async () => {
    const ca = await testCa()
    const leaf = await ca.issue(['proxy.test'])
    const ws = await startWsUpstream('blue')
    const proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true, tls: { cert: leaf.cert, key: leaf.key } },
      versions: { blue: { instances: [{ url: ws.url }] } },
    })
    try {
      const client = new WebSocket(`wss://127.0.0.1:${proxy.port}/ws`, { ca: ca.rootPem })
      const reply = await new Promise<string>((resolve, reject) => {
        client.once('open', () => client.send('over tls'))
        client.once('message', (data) => resolve(String(data)))
        client.once('error', reject)
      })
      expect(reply).toBe('over tls')
      expect(ws.upgrades.at(-1)?.headers['x-forwarded-proto']).toBe('https')
      client.close()

      const head = await new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: proxy.port, ca: ca.rootPem, servername: 'proxy.test' }, () => {
          expect(s.alpnProtocol).toBe(false)
          s.write('GET /plain HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n')
        })
        let got = ''
        s.on('data', (c: Buffer) => (got += c.toString()))
        s.on('end', () => resolve(got))
        s.on('error', reject)
      })
      expect(head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK')
    } finally {
      await proxy.stop()
      await ws.close()
      await ca.close()
    }
  })
})
