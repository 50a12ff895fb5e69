import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocket } from 'ws'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { nextMessage, openClient, expectHandshakeIds, startWsUpstream, type WsUpstream, whenClosed, wsUrl } from '../helpers/ws-upstream.js'

describe('WebSockets tunnelled through the proxy (websocket.mode: tunnel)', () => {
  let a: WsUpstream
  let b: WsUpstream
  let proxy: TestProxy
  const open: WebSocket[] = []
  const client = async (protocols?: string[], options?: WebSocket.ClientOptions) => {
    const ws = await openClient(wsUrl(proxy.url), protocols, options)
    open.push(ws)
    return ws
  }
  const serverSide = () => [...a.clients, ...b.clients].at(-1)!

  beforeAll(async () => {
    const opts = {
      perMessageDeflate: true,
      handleProtocols: (p: Set<string>) => (p.has('v2') ? 'v2' : false),
      upgradeHeaders: ['X-Request-Id: app-made-this-up'],
    }
    a = await startWsUpstream('a', opts)
    b = await startWsUpstream('b', opts)
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }, { url: b.url }] } },
      websocket: { mode: 'tunnel', onDrain: 'handoff' },
    })
  })
  afterEach(async () => {
    for (const ws of open.splice(0)) ws.terminate()
    a.refuse = undefined
    b.refuse = undefined
    await admin(proxy, 'POST', '/v1/undrain', { url: a.url })
    await admin(proxy, 'POST', '/v1/undrain', { url: b.url })
  })
  afterAll(async () => {
    await proxy.stop()
    await a.close()
    await b.close()
  })

  it('echoes text, binary and a 16 MiB message', async () => {
    const ws = await client()
    ws.send('hello')
    expect((await nextMessage(ws)).data.toString()).toBe('hello')
    const big = Buffer.alloc(16 * 1024 * 1024, 7)
    ws.send(big)
    const back = await nextMessage(ws)
    expect(back.isBinary).toBe(true)
    expect(Buffer.compare(back.data, big)).toBe(0)
  })

  it('lets the two ends negotiate subprotocol and compression with each other', async () => {
    const ws = await client(['v1', 'v2'], { perMessageDeflate: true })
    expect(ws.protocol).toBe('v2')
    expect(ws.extensions).toContain('permessage-deflate')
    ws.send('z'.repeat(50_000))
    expect((await nextMessage(ws)).data.toString()).toBe('z'.repeat(50_000))
  })

  it("answers the 101 with the request ID the upstream got, the client's own or a new one, never the upstream's", async () => {
    open.push(...(await expectHandshakeIds(proxy.url, [a, b])))
  })

  it('passes a refused upgrade with its status and body', async () => {
    a.refuse = { status: 401, body: 'who are you' }
    b.refuse = { status: 401, body: 'who are you' }
    const err = await client().then(
      () => undefined,
      (e: { status: number; body: string }) => e,
    )
    expect(err?.status).toBe(401)
    expect(err?.body).toBe('who are you')
  })

  it('passes close codes both ways untouched', async () => {
    const ws = await client()
    const upstreamSaw = whenClosed(serverSide())
    const clientSaw = whenClosed(ws)
    ws.close(4100, 'client done')
    expect(await upstreamSaw).toEqual({ code: 4100, reason: 'client done' })
    expect((await clientSaw).code).toBe(4100)
    const ws2 = await client()
    const closed2 = whenClosed(ws2)
    serverSide().close(4200, 'server done')
    expect(await closed2).toEqual({ code: 4200, reason: 'server done' })
  })

  it('closes the client with 1012 and the upstream with 1001 when the instance drains (no handoff in tunnel mode)', async () => {
    const ws = await client()
    const server = serverSide()
    const under = a.clients.has(server) ? a : b
    const clientSaw = whenClosed(ws)
    const upstreamSaw = whenClosed(server)
    await admin(proxy, 'POST', '/v1/drain', { url: under.url })
    expect(await clientSaw).toEqual({ code: 1012, reason: 'instance draining' })
    expect((await upstreamSaw).code).toBe(1001)
  })

  it('injects the close between frames even while a large message is in flight', async () => {
    const ws = await client()
    const server = serverSide()
    const under = a.clients.has(server) ? a : b
    const clientSaw = whenClosed(ws)
    let errors = 0
    ws.on('error', () => errors++)
    // Several large frames in both directions while the drain lands.
    for (let i = 0; i < 4; i++) {
      ws.send(Buffer.alloc(2 * 1024 * 1024, i))
      server.send(Buffer.alloc(2 * 1024 * 1024, i))
    }
    await admin(proxy, 'POST', '/v1/drain', { url: under.url })
    expect((await clientSaw).code).toBe(1012)
    expect(errors).toBe(0)
  })

  it('counts tunnelled WebSockets per instance', async () => {
    await client()
    await expect.poll(async () => {
      const s = (await admin(proxy, 'GET', '/v1/state')).body
      return s.versions.blue.instances.reduce((n: number, i: { websockets: number }) => n + i.websockets, 0) === 1
    }, { message: 'one WebSocket in the state' }).toBeTruthy()
  })
})

describe('idle WebSockets', () => {
  it.each(['relay', 'tunnel'] as const)('are closed with 1001 after websocket.idleTimeoutMs (%s)', async (mode) => {
    const a = await startWsUpstream('a')
    const proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }] } },
      websocket: { mode, idleTimeoutMs: 200 },
    })
    try {
      const ws = await openClient(wsUrl(proxy.url))
      const closed = whenClosed(ws)
      const started = performance.now()
      // Traffic keeps it open past the timeout...
      for (let i = 0; i < 6; i++) {
        ws.send('still here')
        await nextMessage(ws)
        await new Promise((r) => setTimeout(r, 60))
      }
      expect(ws.readyState).toBe(ws.OPEN)
      // ...silence closes it.
      expect(await closed).toEqual({ code: 1001, reason: 'idle timeout' })
      expect(performance.now() - started).toBeGreaterThan(300)
    } finally {
      await proxy.stop()
      await a.close()
    }
  })
})
