import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/**
 * 204 and 304 (and any answer to HEAD) have no body whatever their
 * Content-Length says (README "Proxying rules"): node:http sends the header
 * whenever an app sets it, and a browser revalidating with If-None-Match
 * gets exactly that 304.
 */
describe('responses without a body that carry Content-Length', () => {
  let app: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      req.resume()
      const status = Number(req.url!.slice(1)) || 200
      res.writeHead(status, { 'content-length': '11', etag: '"v1"', 'x-status': String(status) })
      res.end(status === 200 ? 'hello world' : undefined)
    })
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: app.url }] } },
      // One failure would eject the only instance: none must be counted.
      outlier: { consecutiveFailures: 1 },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
  })

  it('304, 204 and HEAD reach the client unchanged, and the connection is reused after them', async () => {
    const ask = (method: string, path: string) => `${method} ${path} HTTP/1.1\r\nHost: a\r\nIf-None-Match: "v1"\r\n\r\n`
    const r = await rawExchange(
      proxy.port,
      [ask('GET', '/304'), ask('GET', '/204'), ask('HEAD', '/200'), ask('GET', '/200')],
      { timeoutMs: 2000 },
    )
    // Split the stream of four answers on their status lines.
    const answers = r.text.split(/(?=HTTP\/1\.1 )/)
    expect(answers.map((a) => a.slice(0, 12))).toEqual(['HTTP/1.1 304', 'HTTP/1.1 204', 'HTTP/1.1 200', 'HTTP/1.1 200'])
    const [notModified, noContent, head, get] = answers.map((a) => {
      const [h, body] = a.split('\r\n\r\n')
      const headers = Object.fromEntries(
        h!.split('\r\n').slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      )
      return { headers, body }
    })
    expect(notModified!.headers).toMatchObject({ 'content-length': '11', etag: '"v1"', 'x-status': '304' })
    expect(notModified!.body).toBe('')
    expect(noContent!.headers['content-length']).toBeUndefined()
    expect(noContent!.headers['x-status']).toBe('204')
    expect(noContent!.body).toBe('')
    expect(head!.headers['content-length']).toBe('11')
    expect(head!.body).toBe('')
    expect(get!.body).toBe('hello world')
    // Four answers on one connection, still open: keep-alive survived the bodyless ones.
    expect(r.closed).toBe(false)
  })

  it('they are not errors: no outlier ejection, no error in the analysis window or the metrics', async () => {
    for (let i = 0; i < 5; i++) {
      for (const path of ['/304', '/204']) {
        const res = await fetch(`${proxy.url}${path}`)
        expect(res.status).toBe(Number(path.slice(1)))
        await res.arrayBuffer()
      }
    }
    const blue = proxy.sluice.versions[0]!
    expect(blue.instances[0]!.ejected).toBe(false)
    expect(blue.errorsTotal).toBe(0)
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text()
    // 1 from the test before, 5 here.
    expect(metrics).toMatch(/sluice_requests_total\{version="blue",code="304"\} 6/)
    expect(metrics).not.toMatch(/code="5\d\d"/)
  })
})
