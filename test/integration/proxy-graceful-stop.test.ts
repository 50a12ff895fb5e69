import type { IncomingMessage, ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { inflight, rawClient, responses } from '../helpers/raw-http.js'
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

const GET = 'GET / HTTP/1.1\r\nHost: sluice.test\r\n\r\n'

describe('a graceful stop of the proxy', () => {
  let f: DeployFixture | undefined
  afterEach(async () => {
    await f?.close()
    f = undefined
  })

  it('closes an idle keep-alive connection and finishes', async () => {
    f = await startDeployFixture({ blue: [{ name: 'blue' }] })
    const c = await rawClient(f.proxy.port)
    c.socket.write(GET)
    await expect.poll(() => c.text().includes('"name":"blue"'), { message: 'first response' }).toBeTruthy()
    expect(c.text()).toMatch(/connection: keep-alive/i)
    await f.proxy.stop()
    await c.closed
    expect(responses(c.text())).toHaveLength(1)
  })

  it('serves a request already on its way on an idle connection, with Connection: close, then closes it', async () => {
    f = await startDeployFixture({ blue: [{ name: 'blue' }] })
    const c = await rawClient(f.proxy.port)
    c.socket.write(GET)
    await expect.poll(() => c.text().includes('"name":"blue"'), { message: 'first response' }).toBeTruthy()
    const stopping = f.proxy.stop()
    // Written as the stop begins: the proxy reads it only after it began.
    c.socket.write(GET)
    await c.closed
    await stopping
    const [, second] = responses(c.text())
    expect(second).toMatch(/^200 /)
    expect(second).toMatch(/connection: close/i)
    expect(second).toContain('"name":"blue"')
  })

  it('turns readyz 503 at once and waits for a slow response, which ends with Connection: close', async () => {
    const held: ServerResponse[] = []
    const slow = (req: IncomingMessage, res: ServerResponse) => {
      req.resume()
      held.push(res)
    }
    f = await startDeployFixture({ blue: [{ name: 'blue', handler: slow }] })
    const { proxy } = f
    const pending = request(`${proxy.url}/slow`)
    await expect.poll(() => held.length, { message: 'request held upstream' }).toBe(1)
    const stopping = proxy.sluice.stop()
    expect((await admin(proxy, 'GET', '/readyz')).status).toBe(503)
    held[0]!.writeHead(200, { 'content-type': 'text/plain' })
    held[0]!.end('done')
    const res = await pending
    expect(res.statusCode).toBe(200)
    expect(res.headers.connection).toBe('close')
    expect(await res.body.text()).toBe('done')
    await stopping
  })
})
