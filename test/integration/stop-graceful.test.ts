import type { IncomingMessage, ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { admin } from '../helpers/proxy.js'

const GET = 'GET / HTTP/1.1\r\nHost: sluice.test\r\n\r\n'

/** A raw keep-alive client connection that collects what comes back. */
async function rawClient(port: number): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1')
  let text = ''
  socket.setEncoding('latin1').on('data', (d: string) => (text += d))
  socket.on('error', () => {})
  const closed = new Promise<void>((r) => socket.on('close', () => r()))
  await new Promise<void>((r) => socket.once('connect', () => r()))
  return { socket, text: () => text, closed }
}

const responses = (text: string) => text.split('HTTP/1.1 ').slice(1)

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
