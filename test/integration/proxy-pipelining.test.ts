import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { inflight } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const PIPELINED = 5000

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
