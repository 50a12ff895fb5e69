import { request } from 'node:http'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocket } from 'ws'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { nextMessage, openClient, expectHandshakeIds, startWsUpstream, type WsUpstream, whenClosed, wsUrl } from '../helpers/ws-upstream.js'

describe('WebSockets relayed through the proxy', () => {
  let blue: WsUpstream
  let green: WsUpstream
  let proxy: TestProxy
  const open: WebSocket[] = []
  const client = async (path = '/', protocols?: string | string[], options?: WebSocket.ClientOptions) => {
    const ws = await openClient(wsUrl(proxy.url, path), protocols, options)
    open.push(ws)
    return ws
  }

  beforeAll(async () => {
    blue = await startWsUpstream('blue', {
      upgradeHeaders: ['X-Request-Id: app-made-this-up'],
      handleProtocols: (offered) => (offered.has('chat.v2') ? 'chat.v2' : false),
    })
    green = await startWsUpstream('green')
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
      weights: { blue: 100 },
      overrides: [{ match: { header: 'x-canary', value: 'true' }, version: 'green' }],
      websocket: { perMessageDeflate: true },
    })
  })
  afterEach(async () => {
    for (const ws of open.splice(0)) ws.terminate()
    blue.refuse = undefined
  })
  afterAll(async () => {
    await proxy.stop()
    await blue.close()
    await green.close()
  })

  it('echoes text and binary messages with their type', async () => {
    const ws = await client()
    ws.send('hello')
    const text = await nextMessage(ws)
    expect(text.isBinary).toBe(false)
    expect(text.data.toString()).toBe('hello')
    const bytes = Buffer.from([0, 1, 2, 250, 255])
    ws.send(bytes)
    const bin = await nextMessage(ws)
    expect(bin.isBinary).toBe(true)
    expect(Buffer.compare(bin.data, bytes)).toBe(0)
  })

  it('echoes a 16 MiB message intact', async () => {
    const ws = await client()
    const big = Buffer.alloc(16 * 1024 * 1024)
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff
    ws.send(big)
    const back = await nextMessage(ws)
    expect(back.data.length).toBe(big.length)
    expect(Buffer.compare(back.data, big)).toBe(0)
  })

  it('reassembles a fragmented message into one message', async () => {
    const ws = await client()
    ws.send('frag-', { fin: false })
    ws.send('ment', { fin: false })
    ws.send('ed', { fin: true })
    const m = await nextMessage(ws)
    expect(m.data.toString()).toBe('frag-mented')
    expect(m.isBinary).toBe(false)
  })

  it('relays ping and pong end to end', async () => {
    const ws = await client()
    const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve))
    ws.ping('are-you-there')
    expect((await pong).toString()).toBe('are-you-there')
    // And the upstream's ping reaches the client, whose pong reaches the upstream.
    const server = [...blue.clients].at(-1)!
    const serverPong = new Promise<Buffer>((resolve) => server.once('pong', resolve))
    server.ping('and-you')
    expect((await serverPong).toString()).toBe('and-you')
  })

  it('completes the client handshake with the subprotocol the upstream chose', async () => {
    const ws = await client('/', ['chat.v1', 'chat.v2'])
    expect(ws.protocol).toBe('chat.v2')
    const req = blue.upgrades.at(-1)!
    expect(req.headers['sec-websocket-protocol']).toBe('chat.v1, chat.v2')
  })

  it('accepts without a subprotocol when the upstream picks none of the offered', async () => {
    const raw = await rawUpgrade(proxy.url, { 'sec-websocket-protocol': 'none-please' })
    expect(raw.status).toBe(101)
    expect(raw.headers['sec-websocket-protocol']).toBeUndefined()
  })

  it('negotiates permessage-deflate per side, never copying the client offer upstream', async () => {
    const ws = await client('/', undefined, { perMessageDeflate: { serverMaxWindowBits: 10 } })
    expect(ws.extensions).toContain('permessage-deflate')
    const offeredUpstream = blue.upgrades.at(-1)!.headers['sec-websocket-extensions']
    // The proxy's own offer (blue declines it), not the client's parameters.
    expect(offeredUpstream).toContain('permessage-deflate')
    expect(offeredUpstream).not.toContain('server_max_window_bits=10')
    ws.send('x'.repeat(10_000))
    expect((await nextMessage(ws)).data.toString()).toBe('x'.repeat(10_000))
  })

  it("answers the 101 with the request ID the upstream got, the client's own or a new one, never the upstream's", async () => {
    open.push(...(await expectHandshakeIds(proxy.url, [blue])))
  })

  it('forwards the header rules and the path upstream', async () => {
    await client('/chat/room-7?lang=en')
    const req = blue.upgrades.at(-1)!
    expect(req.url).toBe('/chat/room-7?lang=en')
    expect(req.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(req.headers['x-forwarded-proto']).toBe('http')
    expect(req.headers.host).toBe(new URL(proxy.url).host)
  })

  it('passes a refused upgrade to the client with the upstream status and body', async () => {
    blue.refuse = { status: 403, body: 'not for you' }
    const err = await client().then(
      () => undefined,
      (e: { status: number; body: string; headers: Record<string, string> }) => e,
    )
    expect(err?.status).toBe(403)
    expect(err?.body).toBe('not for you')
    expect(err?.headers['x-refused-by']).toBe('blue')
  })

  it('answers 400 to a malformed WebSocket handshake', async () => {
    const res = await rawUpgrade(proxy.url, { 'sec-websocket-key': 'not-a-key' })
    expect(res.status).toBe(400)
    expect(JSON.parse(res.body).error.code).toBe('SLUICE_BAD_WEBSOCKET_HANDSHAKE')
  })

  it('serves a request offering another upgrade (h2c) as a plain request', async () => {
    const res = await rawUpgrade(proxy.url, { upgrade: 'h2c', connection: 'Upgrade, HTTP2-Settings' })
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body).name).toBe('blue')
    expect(res.headers.connection).toBe('close')
  })

  it('routes upgrades by overrides like requests', async () => {
    await client('/', undefined, { headers: { 'x-canary': 'true' } })
    expect(green.upgrades.length).toBeGreaterThan(0)
  })

  it('passes close codes and reasons from the client to the upstream', async () => {
    const ws = await client()
    const server = [...blue.clients].at(-1)!
    const upstreamSaw = whenClosed(server)
    const clientSaw = whenClosed(ws)
    ws.close(4001, 'client says bye')
    expect(await upstreamSaw).toEqual({ code: 4001, reason: 'client says bye' })
    expect((await clientSaw).code).toBe(4001)
  })

  it('passes close codes and reasons from the upstream to the client', async () => {
    const ws = await client()
    const closed = whenClosed(ws)
    ;[...blue.clients].at(-1)!.close(4002, 'server says bye')
    expect(await closed).toEqual({ code: 4002, reason: 'server says bye' })
  })

  it('passes a close without a code as a close without a code', async () => {
    const ws = await client()
    const closed = whenClosed(ws)
    ;[...blue.clients].at(-1)!.close()
    expect((await closed).code).toBe(1005)
  })

  it('counts open WebSockets per instance in /v1/state and per version in the metrics', async () => {
    const before = (await admin(proxy, 'GET', '/v1/state')).body.versions.blue.instances[0].websockets
    const ws = await client()
    await expect
      .poll(async () => (await admin(proxy, 'GET', '/v1/state')).body.versions.blue.instances[0].websockets, {
        message: 'state to count the WebSocket',
      })
      .toBe(before + 1)
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text()
    expect(metrics).toMatch(new RegExp(`sluice_websocket_connections\\{version="blue"\\} ${before + 1}`))
    ws.close()
    await expect
      .poll(async () => (await admin(proxy, 'GET', '/v1/state')).body.versions.blue.instances[0].websockets, {
        message: 'state to uncount the WebSocket',
      })
      .toBe(before)
  })
})

/** A hand-written upgrade request, to see exactly what the proxy answers. */
function rawUpgrade(
  base: string,
  extra: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/`, {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
        ...extra,
      },
    })
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' })
    })
    req.on('response', (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('WebSocket message size', () => {
  it('closes a side that sends a message over websocket.maxPayload with 1009 and tells the other side why', async () => {
    const a = await startWsUpstream('a')
    const proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }] } },
      websocket: { maxPayload: 1024 },
    })
    try {
      const ws = await openClient(wsUrl(proxy.url))
      ws.send('small')
      expect((await nextMessage(ws)).data.toString()).toBe('small')
      const upstreamClosed = whenClosed([...a.clients][0]!)
      const closed = whenClosed(ws)
      ws.send(Buffer.alloc(2048))
      expect((await closed).code).toBe(1009)
      expect(await upstreamClosed).toEqual({ code: 1001, reason: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' })
      // The other way round: the upstream's fault reaches the client as 1014 (bad gateway).
      const ws2 = await openClient(wsUrl(proxy.url))
      const closed2 = whenClosed(ws2)
      ;[...a.clients].at(-1)!.send(Buffer.alloc(2048))
      expect(await closed2).toEqual({ code: 1014, reason: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' })
    } finally {
      await proxy.stop()
      await a.close()
    }
  })
})

describe('WebSocket upgrades routed like requests', () => {
  it('keeps a sticky key on one instance, retries a refused connection elsewhere, and answers 502 and 503 itself', async () => {
    const a = await startWsUpstream('a')
    const b = await startWsUpstream('b')
    const gone = await startWsUpstream('gone')
    await gone.close()
    const proxy = await startProxy({
      versions: {
        blue: { instances: [{ url: a.url }, { url: b.url }, { url: gone.url }] },
        lone: { instances: [{ url: gone.url.replace('127.0.0.1', 'localhost') }] },
      },
      weights: { blue: 100 },
      sticky: { keys: ['header:x-user-id'] },
      overrides: [{ match: { header: 'x-lone', value: '1' }, version: 'lone' }],
    })
    const clients: WebSocket[] = []
    try {
      // Sticky: one key, one instance, every time.
      for (let i = 0; i < 8; i++)
        clients.push(await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-user-id': 'zoe' } }))
      expect([a.clients.size, b.clients.size].sort()).toEqual([0, 8])
      // Keyless: the dead instance's refusals are retried on a live one, so every upgrade opens.
      for (let i = 0; i < 9; i++) clients.push(await openClient(wsUrl(proxy.url)))
      expect(a.clients.size + b.clients.size).toBe(17)
      // Only an instance that refuses connections left (the retry has nowhere to go): 502 with the error body.
      await admin(proxy, 'POST', '/v1/drain', { version: 'blue' })
      const refused = await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-lone': '1' } }).then(
        () => undefined,
        (e: { status: number; body: string }) => e,
      )
      expect(refused?.status).toBe(502)
      expect(JSON.parse(refused!.body).error.code).toBe('SLUICE_UPSTREAM_FAILED')
      // Nothing usable at all: 503.
      await admin(proxy, 'POST', '/v1/drain', { version: 'lone' })
      const none = await openClient(wsUrl(proxy.url)).then(
        () => undefined,
        (e: { status: number; body: string }) => e,
      )
      expect(none?.status).toBe(503)
      expect(JSON.parse(none!.body).error.code).toBe('SLUICE_NO_USABLE_INSTANCE')
    } finally {
      for (const c of clients) c.terminate()
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })
})
