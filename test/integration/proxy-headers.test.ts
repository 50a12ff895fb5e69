import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

describe('header rules through the real proxy', () => {
  let app: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      if (req.url === '/echo-body') {
        const chunks: Buffer[] = []
        req.on('data', (c) => chunks.push(c))
        req.on('end', () => res.end(JSON.stringify({ raw: req.rawHeaders, body: Buffer.concat(chunks).toString() })))
        return
      }
      req.resume()
      if (req.url === '/hop') {
        res.setHeader('Connection', 'keep-alive, X-Internal')
        res.setHeader('X-Internal', 'secret')
        res.setHeader('Keep-Alive', 'timeout=7, max=3')
        res.setHeader('Proxy-Connection', 'keep-alive')
        res.setHeader('X-Kept', 'yes')
        res.setHeader('Set-Cookie', ['a=1', 'b=2'])
        res.end('hop')
        return
      }
      // Echo what arrived: the raw header pairs, as the upstream saw them.
      const body = JSON.stringify({ raw: req.rawHeaders })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
    proxy = await startProxy({ versions: { blue: { instances: [{ url: app.url }] } } })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
  })

  /** Header name (lower-cased) -> values in arrival order, from the upstream's echo. */
  function received(body: string): Record<string, string[]> {
    const raw: string[] = JSON.parse(body).raw
    const out: Record<string, string[]> = {}
    for (let i = 0; i < raw.length; i += 2) (out[raw[i]!.toLowerCase()] ??= []).push(raw[i + 1]!)
    return out
  }

  it('request: hop-by-hop and Connection-named headers removed, X-Forwarded-* set, Host passed through', async () => {
    const reply = await rawExchange(proxy.port, [
      'GET /echo HTTP/1.1\r\n' +
        'Host: shop.example:8443\r\n' +
        'Connection: close, X-Secret\r\n' +
        'X-Secret: hidden\r\n' +
        'Keep-Alive: timeout=5\r\n' +
        'Proxy-Connection: keep-alive\r\n' +
        'TE: trailers\r\n' +
        'X-Forwarded-For: 203.0.113.9\r\n' +
        'X-Forwarded-Proto: https\r\n' +
        'X-Forwarded-Host: spoofed.example\r\n' +
        'X-Kept: yes\r\n' +
        '\r\n',
    ])
    expect(reply.status).toBe(200)
    const h = received(reply.body)
    expect(h.host).toEqual(['shop.example:8443'])
    expect(h['x-forwarded-for']).toEqual(['203.0.113.9, 127.0.0.1'])
    expect(h['x-forwarded-proto']).toEqual(['http'])
    expect(h['x-forwarded-host']).toEqual(['shop.example:8443'])
    expect(h['x-kept']).toEqual(['yes'])
    for (const gone of ['x-secret', 'keep-alive', 'proxy-connection', 'te']) expect(h[gone], gone).toBeUndefined()
    // The upstream connection's own Connection header is undici's, never the client's.
    expect(h.connection ?? []).not.toContain('close, X-Secret')
  })

  it('request: a client with no X-Forwarded-For gets one holding its address', async () => {
    const res = await request(`${proxy.url}/echo`)
    const h = received(await res.body.text())
    expect(h['x-forwarded-for']).toEqual(['127.0.0.1'])
    expect(h.host).toEqual([`127.0.0.1:${proxy.port}`])
    expect(h['x-forwarded-host']).toEqual([`127.0.0.1:${proxy.port}`])
  })

  it('response: hop-by-hop and Connection-named headers removed, the rest passed', async () => {
    const res = await request(`${proxy.url}/hop`)
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe('hop')
    expect(res.headers['x-internal']).toBeUndefined()
    expect(res.headers['proxy-connection']).toBeUndefined()
    // The client's connection has the proxy's own keep-alive terms, not the upstream's.
    expect(res.headers['keep-alive']).not.toBe('timeout=7, max=3')
    expect(res.headers['x-kept']).toBe('yes')
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2'])
  })
  // Large enough to arrive in several reads: the body is still streaming when the request goes upstream.
  const BIG = 'hello'.repeat(40_000)
  it.each([
    ['Host', `Content-Length: ${BIG.length}\r\n`, BIG],
    ['Content-Length', `Content-Length: ${BIG.length}\r\n`, BIG],
    ['Transfer-Encoding', 'Transfer-Encoding: chunked\r\n', `${BIG.length.toString(16)}\r\n${BIG}\r\n0\r\n\r\n`],
  ])('request: Connection naming %s does not remove the header that frames or names the request', async (named, framing, body) => {
    const reply = await rawExchange(proxy.port, [
      `POST /echo-body HTTP/1.1\r\nHost: shop.example\r\nConnection: close, ${named}\r\n${framing}\r\n`,
      body,
    ])
    expect(reply.status).toBe(200)
    const echoed = JSON.parse(reply.body) as { raw: string[]; body: string }
    const h = received(JSON.stringify({ raw: echoed.raw }))
    expect(echoed.body === BIG).toBe(true)
    expect(h.host).toEqual(['shop.example'])
    // A length the client gave is forwarded as a length, never re-framed as chunked.
    if (named !== 'Transfer-Encoding')
      expect({ cl: h['content-length'], te: h['transfer-encoding'] }).toEqual({ cl: [String(BIG.length)], te: undefined })
  })
})
