import { type AddressInfo, createServer, type Server, type Socket } from 'node:net'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type LoadResult, steadyLoad } from '../helpers/load.js'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { connections, inflight } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

interface RawUpstream {
  url: string
  server: Server
  sockets: Set<Socket>
  requests: number
}

/** A TCP server that answers each request's first bytes with `behave` instead of proper HTTP. */
async function rawUpstream(behave: (socket: Socket) => void): Promise<RawUpstream> {
  const sockets = new Set<Socket>()
  const u: RawUpstream = { url: '', server: createServer(), sockets, requests: 0 }
  u.server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.once('data', () => {
      u.requests++
      behave(socket)
    })
  })
  await new Promise<void>((r) => u.server.listen(0, '127.0.0.1', r))
  u.url = `http://127.0.0.1:${(u.server.address() as AddressInfo).port}`
  return u
}

const HOSTILE: Record<string, (s: Socket) => void> = {
  garbage: (s) => s.end('this is not HTTP at all\r\n\r\n'),
  'half-close': (s) => s.end(),
  reset: (s) => s.resetAndDestroy(),
  'bad-header': (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\nhello'),
  'reset-mid-body': (s) =>
    s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n' + 'x'.repeat(100), () =>
      setTimeout(() => s.resetAndDestroy(), 20),
    ),
  'short-body': (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this'),
  'stall-mid-body': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nand then nothing'),
}

describe('hostile upstreams', () => {
  const raw: Record<string, RawUpstream> = {}
  let live: TestUpstream
  let proxy: TestProxy
  let load: ReturnType<typeof steadyLoad>
  let loadResult: Promise<LoadResult> | undefined
  const dispatcher = new Agent({ connections: 4 })

  beforeAll(async () => {
    for (const [name, behave] of Object.entries(HOSTILE)) raw[name] = await rawUpstream(behave)
    live = await startUpstream('live')
    const versions: Record<string, unknown> = { live: { instances: [{ url: live.url }] } }
    for (const [name, u] of Object.entries(raw)) versions[name] = { instances: [{ url: u.url }] }
    proxy = await startProxy({
      versions,
      weights: { live: 100 },
      overrides: Object.keys(raw).map((name) => ({ match: { header: 'x-version', value: name }, version: name })),
      outlier: { consecutiveFailures: 0 },
      // No retry onto `live`: each hostile answer must show as it is.
      retries: { attempts: 0 },
      timeouts: { upstreamMs: 2000, bodyIdleMs: 500 },
    })
    load = steadyLoad({ url: proxy.url, concurrency: 4, path: '/load', keyFor: () => undefined })
  })
  afterAll(async () => {
    loadResult ??= load.stop()
    await loadResult
    if (!dispatcher.closed) await dispatcher.close()
    await proxy.stop()
    await live.close()
    for (const u of Object.values(raw)) {
      for (const s of u.sockets) s.destroy()
      await new Promise((r) => u.server.close(r))
    }
  })

  async function get(version: string) {
    const res = await request(`${proxy.url}/h`, { headers: { 'x-version': version }, dispatcher })
    let body: string | Error
    try {
      body = await res.body.text()
    } catch (err) {
      body = err as Error
    }
    return { status: res.statusCode, body }
  }

  it.each(['garbage', 'half-close', 'reset', 'bad-header'])(
    'an upstream answering with %s: 502 SLUICE_UPSTREAM_FAILED',
    async (name) => {
      const r = await get(name)
      expect(r.status).toBe(502)
      expect(JSON.parse(r.body as string).error.code).toBe('SLUICE_UPSTREAM_FAILED')
      expect(raw[name]!.requests).toBe(1)
    },
  )

  it.each(['reset-mid-body', 'short-body', 'stall-mid-body'])(
    'an upstream that breaks off its body (%s): the client sees a cut response, not a complete one',
    async (name) => {
      const r = await get(name)
      expect(r.status).toBe(200)
      expect(r.body).toBeInstanceOf(Error)
      expect(raw[name]!.requests).toBe(1)
    },
  )

  it('keeps serving throughout, and leaks no connection on either side', async () => {
    loadResult = load.stop()
    const result = await loadResult
    expect(result.failures).toEqual([])
    expect(result.ok).toBeGreaterThan(0)
    await dispatcher.close()
    await expect.poll(() => inflight(proxy), { message: 'in flight back to 0' }).toBe(0)
    await expect.poll(async () => (await connections(proxy)), { message: 'no client connection left open' }).toBe(0)
    for (const [name, u] of Object.entries(raw))
      await expect
        .poll(() => u.sockets.size, { message: `the proxy to close its connection to the ${name} upstream` })
        .toBe(0)
  })
})
