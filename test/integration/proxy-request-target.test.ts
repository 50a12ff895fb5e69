import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

describe('request-targets that are not a plain path', () => {
  let a: TestUpstream
  let b: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    const echo = (name: string) =>
      startUpstream(name, (req, res) => {
        req.resume()
        res.end(JSON.stringify({ url: req.url, host: req.headers.host }))
      })
    a = await echo('a')
    b = await echo('b')
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }, { url: b.url }] } },
      outlier: { consecutiveFailures: 2 },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await a.close()
    await b.close()
  })

  it('absolute-form is forwarded in origin-form, Host as the client sent it', async () => {
    const r = await rawExchange(proxy.port, [
      'GET http://other.example:81/x/y?q=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n',
    ])
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body)).toEqual({ url: '/x/y?q=1', host: 'shop.example' })
  })

  it('OPTIONS * gets a 400 from the proxy and never counts against an instance', async () => {
    const hits = a.hits + b.hits
    for (let i = 0; i < 6; i++) {
      const r = await rawExchange(proxy.port, ['OPTIONS * HTTP/1.1\r\nHost: shop.example\r\n\r\n'], { timeoutMs: 5000 })
      expect(r.status).toBe(400)
      expect(JSON.parse(r.body)).toEqual({
        error: {
          code: 'SLUICE_BAD_REQUEST',
          message: 'cannot forward the request-target "*"',
          requestId: expect.any(String),
        },
      })
    }
    expect(a.hits + b.hits).toBe(hits)
    const instances = proxy.sluice.versions[0]!.instances
    expect(instances.map((i) => ({ ejected: i.ejected, failures: i.consecutiveFailures }))).toEqual([
      { ejected: false, failures: 0 },
      { ejected: false, failures: 0 },
    ])
  })

  it('a request undici refuses to send (two Host headers) gets a 400 and blames no instance', async () => {
    const hits = a.hits + b.hits
    for (let i = 0; i < 4; i++) {
      const r = await rawExchange(proxy.port, ['GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n'])
      expect(r.status).toBe(400)
      expect(JSON.parse(r.body).error.code).toBe('SLUICE_BAD_REQUEST')
    }
    expect(a.hits + b.hits).toBe(hits)
    expect(proxy.sluice.versions[0]!.instances.map((i) => i.ejected)).toEqual([false, false])
  })
})
