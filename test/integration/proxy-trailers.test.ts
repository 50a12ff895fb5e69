import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** README "Proxying rules": response trailers reach the client (gRPC-style status after the body, checksums). */
describe('response trailers', () => {
  let app: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    app = await startUpstream('blue', (req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-status' })
      res.write('part one, ')
      res.addTrailers({ 'x-checksum': 'abc123', 'x-status': '0' })
      res.end('part two')
    })
    proxy = await startProxy({ versions: { blue: { instances: [{ url: app.url }] } } })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
  })

  it('are passed after a chunked body, without the client sending TE: trailers', async () => {
    const r = await rawExchange(proxy.port, ['GET /t HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'])
    expect(r.status).toBe(200)
    expect(r.headers['transfer-encoding']).toBe('chunked')
    // The body's chunks, then the last (empty) chunk followed by the trailer fields.
    expect(r.body).toMatch(/part one, .*part two\r\n0\r\n/s)
    const trailer = r.body.slice(r.body.lastIndexOf('\r\n0\r\n') + 5)
    expect(trailer.toLowerCase()).toBe('x-checksum: abc123\r\nx-status: 0\r\n\r\n')
  })

  it('an HTTP/1.0 client (no chunked encoding) gets the body without them', async () => {
    const r = await rawExchange(proxy.port, ['GET /t HTTP/1.0\r\n\r\n'])
    expect(r.status).toBe(200)
    expect(r.body).toBe('part one, part two')
  })
})
