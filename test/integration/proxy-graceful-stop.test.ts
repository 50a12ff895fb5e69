import { connect } from 'node:net'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { inflight } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

describe('a graceful stop with requests in flight', () => {
  let slow: TestUpstream
  let proxy: TestProxy
  let release: () => void = () => {}
  const released = new Promise<void>((r) => (release = r))

  beforeAll(async () => {
    // Holds every request until the test releases them, then answers with a streamed body.
    slow = await startUpstream('slow', (req, res) => {
      req.resume()
      void released.then(() => {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('part one, ')
        setTimeout(() => res.end('part two'), 50)
      })
    })
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: slow.url }] } },
      drain: { timeoutMs: 20_000 },
    })
  })
  afterAll(async () => {
    release()
    await proxy.stop()
    await slow.close()
  })

  it('every in-flight request finishes, readyz turns 503 and new connections are refused', async () => {
    const dispatcher = new Agent({ connections: 10 })
    const pending = Array.from({ length: 10 }, async (_, i) => {
      const res = await request(`${proxy.url}/slow/${i}`, {
        dispatcher,
        method: i % 2 ? 'POST' : 'GET',
        body: i % 2 ? 'x' : null,
      })
      return { status: res.statusCode, connection: res.headers.connection, body: await res.body.text() }
    })
    await expect.poll(() => slow.hits, { message: 'all 10 requests to reach the upstream' }).toBe(10)
    expect(inflight(proxy)).toBe(10)

    const stopped = proxy.stop()
    // The stop waits for the requests: readyz answers 503 meanwhile.
    await expect.poll(async () => (await fetch(`${proxy.adminUrl}/readyz`)).status, { message: 'readyz 503' }).toBe(503)
    await expect
      .poll(() => proxy.sluice.listener.server.listening, { message: 'the listener to stop accepting' })
      .toBe(false)
    const refused = await new Promise<string>((resolve) => {
      const s = connect(proxy.port, '127.0.0.1')
      s.on('connect', () => {
        s.destroy()
        resolve('connected')
      })
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
    })
    expect(refused).toBe('ECONNREFUSED')

    release()
    const results = await Promise.all(pending)
    await stopped
    await dispatcher.close()
    expect(results).toEqual(
      Array.from({ length: 10 }, () => ({ status: 200, connection: 'close', body: 'part one, part two' })),
    )
    expect(inflight(proxy)).toBe(0)
    expect(proxy.sluice.status).toBe('stopped')
  })
})
