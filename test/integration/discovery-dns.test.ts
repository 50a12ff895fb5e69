import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startDns, type TestDns } from '../helpers/dns-server.js'
import { steadyLoad } from '../helpers/load.js'
import { admin, startProxy, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { openClient, startWsUpstream, whenClosed, nextMessage, type WsUpstream, wsUrl } from '../helpers/ws-upstream.js'

const NAME = 'green.sluice.test'
const INTERVAL_MS = 200
const PROBE_MS = 200

interface InstanceRow {
  url: string
  source: string
  healthy: boolean
  usable: boolean
  draining: boolean
}

async function instances(p: TestProxy, version = 'green'): Promise<InstanceRow[]> {
  const s = await admin(p, 'GET', '/v1/state')
  return s.body.versions[version].instances
}

async function discoveryErrors(p: TestProxy, version = 'green'): Promise<number> {
  const text = await (await fetch(`${p.adminUrl}/metrics`)).text()
  const m = new RegExp(`^sluice_discovery_errors_total\\{version="${version}"\\} (\\d+)`, 'm').exec(text)
  return m ? Number(m[1]) : -1
}

async function hit(p: TestProxy): Promise<string> {
  const res = await request(p.url + '/')
  await res.body.dump()
  return String(res.headers['x-upstream'])
}

function proxyConfig(dns: TestDns, discover: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    resolver: { servers: [dns.server], timeoutMs: 200 },
    versions: { green: { discover: { intervalMs: INTERVAL_MS, ...discover } } },
    health: { intervalMs: PROBE_MS, timeoutMs: 100, healthyThreshold: 1 },
    ...extra,
  }
}

describe('DNS discovery (a real dnsmasq)', () => {
  let dns: TestDns
  let port: number
  const ups: (TestUpstream | WsUpstream)[] = []
  let proxy: TestProxy | undefined

  beforeAll(async () => {
    const a = await startWsUpstream('g2', { host: '127.0.0.2' })
    port = a.port
    ups.push(a, await startWsUpstream('g3', { host: '127.0.0.3', port }))
    ups.push(await startUpstream('g4', undefined, port, '127.0.0.4'))
    dns = await startDns({ [NAME]: ['127.0.0.2'] })
  })
  afterEach(async () => {
    await proxy?.stop()
    proxy = undefined
    await dns.restart()
    await dns.setHosts({ [NAME]: ['127.0.0.2'] })
  })
  afterAll(async () => {
    await dns.stop()
    await Promise.all(ups.map((u) => u.close()))
  })

  it('is not ready before the first answer; then its addresses are instances that take traffic, and an added one within the interval plus a probe', async () => {
    await dns.kill()
    proxy = await startProxy(proxyConfig(dns, { dns: NAME, port }))
    // Refused lookups are not answers: not ready, and each one counts.
    await expect
      .poll(async () => (await discoveryErrors(proxy!)), { message: 'failed lookups to count' })
      .toBeGreaterThanOrEqual(2)
    expect((await fetch(`${proxy.adminUrl}/readyz`)).status).toBe(503)
    await dns.restart()
    await expect
      .poll(async () => (await fetch(`${proxy!.adminUrl}/readyz`)).status, { message: 'readyz 200', timeout: 10_000 })
      .toBe(200)
    await expect
      .poll(async () => (await instances(proxy!))[0]?.usable, { message: 'the discovered instance to be usable' })
      .toBeTruthy()
    const rows = await instances(proxy)
    expect(rows.map((r) => [r.url, r.source])).toEqual([[`http://127.0.0.2:${port}`, 'dns']])
    expect(await hit(proxy)).toBe('g2')

    const t0 = Date.now()
    await dns.setHosts({ [NAME]: ['127.0.0.2', '127.0.0.3'] })
    await expect.poll(async () => {
      const seen = new Set<string>()
      for (let i = 0; i < 10; i++) seen.add(await hit(proxy!))
      return seen.has('g3')
    }, { message: 'the added address to take traffic', timeout: 10_000 }).toBeTruthy()
    const tookMs = Date.now() - t0
    console.log(`an added address took traffic after ${tookMs} ms (interval ${INTERVAL_MS} + probe ${PROBE_MS})`)
    // Within the interval plus one probe, with room for a shared machine.
    expect(tookMs).toBeLessThan((INTERVAL_MS + PROBE_MS) * 10)
  })

  it('an address removed under load drains: 0 failed requests, its WebSockets handed off, then it leaves', async () => {
    await dns.setHosts({ [NAME]: ['127.0.0.2', '127.0.0.3'] })
    proxy = await startProxy(
      proxyConfig(dns, { dns: NAME, port }, {
        sticky: { keys: ['header:x-user-id'] },
        websocket: { onDrain: 'handoff', handoffTimeoutMs: 3000 },
        drain: { timeoutMs: 10_000 },
      }),
    )
    await expect
      .poll(async () => (await instances(proxy!)).filter((r) => r.usable).length, { message: 'two usable instances' })
      .toBe(2)
    const g3 = ups[1] as WsUpstream
    const clients = await Promise.all(
      Array.from({ length: 10 }, (_, i) => openClient(wsUrl(proxy!.url), undefined, { headers: { 'x-user-id': `ws-${i}` } })),
    )
    expect(g3.clients.size).toBeGreaterThan(0)
    const load = steadyLoad({ url: proxy.url, concurrency: 8 })
    await expect.poll(() => load.result.ok, { message: 'load on both instances' }).toBeGreaterThan(300)
    await dns.setHosts({ [NAME]: ['127.0.0.2'] })
    await expect
      .poll(async () => (await instances(proxy!)).length, { message: 'the removed address to leave', timeout: 10_000 })
      .toBe(1)
    const during = load.result.ok
    await expect.poll(() => load.result.ok, { message: 'more load after the change' }).toBeGreaterThan(during + 300)
    const r = await load.stop()
    expect(r.failures).toEqual([])
    expect(r.failed).toBe(0)
    console.log(`removal under load: ${r.sent} requests, ${r.failed} failed`)
    // The WebSockets moved to the instance that stays, without closing the clients.
    expect(g3.clients.size).toBe(0)
    for (const ws of clients) {
      expect(ws.readyState).toBe(ws.OPEN)
      ws.send('still here')
      expect((await nextMessage(ws)).data.toString()).toBe('still here')
      ws.close()
      await whenClosed(ws)
    }
    expect((await instances(proxy)).map((row) => row.url)).toEqual([`http://127.0.0.2:${port}`])
  })

  it('keeps the last-known instances serving while the DNS server is down, and counts the errors', async () => {
    await dns.setHosts({ [NAME]: ['127.0.0.2', '127.0.0.3'] })
    proxy = await startProxy(proxyConfig(dns, { dns: NAME, port }))
    await expect
      .poll(async () => (await instances(proxy!)).filter((r) => r.usable).length, { message: 'two usable instances' })
      .toBe(2)
    const before = await discoveryErrors(proxy)
    expect(before).toBe(0)
    await dns.kill()
    await expect
      .poll(async () => (await discoveryErrors(proxy!)), { message: 'the error counter to rise' })
      .toBeGreaterThanOrEqual(3)
    expect((await instances(proxy)).map((r) => r.url).sort()).toEqual([
      `http://127.0.0.2:${port}`,
      `http://127.0.0.3:${port}`,
    ])
    const seen = new Set<string>()
    for (let i = 0; i < 20; i++) seen.add(await hit(proxy))
    expect([...seen].sort()).toEqual(['g2', 'g3'])
    expect((await fetch(`${proxy.adminUrl}/readyz`)).status).toBe(200)
  })

  it('an empty answer empties the version only after emptyAfter answers in a row', async () => {
    proxy = await startProxy(proxyConfig(dns, { dns: NAME, port, emptyAfter: 3 }))
    await expect.poll(async () => (await instances(proxy!)).length, { message: 'one instance' }).toBe(1)
    await dns.setHosts({})
    await expect
      .poll(async () => (await discoveryErrors(proxy!)), { message: 'the first empty answer' })
      .toBeGreaterThanOrEqual(1)
    // One empty answer (NXDOMAIN) is not enough to drop the version.
    const after = await instances(proxy)
    if ((await discoveryErrors(proxy)) < 3) expect(after.length).toBe(1)
    await expect
      .poll(async () => (await instances(proxy!)).length, { message: 'the version to be emptied', timeout: 10_000 })
      .toBe(0)
    expect(await discoveryErrors(proxy)).toBeGreaterThanOrEqual(3)
    // An empty version is not usable: 503, and the proxy keeps serving its admin API.
    const res = await request(proxy.url + '/')
    await res.body.dump()
    expect(res.statusCode).toBe(503)
    await dns.setHosts({ [NAME]: ['127.0.0.4'] })
    await expect
      .poll(async () => (await hit(proxy!)), { message: 'the address that came back to take traffic', timeout: 10_000 })
      .toBe('g4')
  })

  it('SRV records: every target address on its record port', async () => {
    const b1 = await startUpstream('b1', undefined, 0, '127.0.0.5')
    const b2 = await startUpstream('b2', undefined, 0, '127.0.0.6')
    ups.push(b1, b2)
    await dns.setHosts({ 'b1.sluice.test': ['127.0.0.5'], 'b2.sluice.test': ['127.0.0.6'] })
    await dns.setSrv({
      '_http._tcp.blue.sluice.test': [
        { target: 'b1.sluice.test', port: b1.port },
        { target: 'b2.sluice.test', port: b2.port },
      ],
    })
    try {
      proxy = await startProxy({
        resolver: { servers: [dns.server], timeoutMs: 200 },
        versions: { blue: { discover: { srv: '_http._tcp.blue.sluice.test', intervalMs: INTERVAL_MS } } },
      })
      await expect.poll(async () => (await instances(proxy!, 'blue')).length, { message: 'two SRV instances' }).toBe(2)
      const rows = await instances(proxy, 'blue')
      expect(rows.map((r) => [r.url, r.source]).sort()).toEqual([
        [b1.url, 'srv'],
        [b2.url, 'srv'],
      ])
      expect(b1.port).not.toBe(b2.port)
      const seen = new Set<string>()
      for (let i = 0; i < 20; i++) seen.add(await hit(proxy))
      expect([...seen].sort()).toEqual(['b1', 'b2'])
    } finally {
      await dns.setSrv({})
    }
  })

  it('a reload keeps readyz and the instances while a lookup restarts, and a version that stops discovering drains its discovered instances', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-dns-reload-'))
    const file = join(dir, 'sluice.json')
    const write = (green: Record<string, unknown>) =>
      writeFileSync(
        file,
        JSON.stringify({
          listen: { host: '127.0.0.1', port: 0 },
          admin: { host: '127.0.0.1', port: 0, token: TEST_TOKEN },
          log: { level: 'silent' },
          resolver: { servers: [dns.server], timeoutMs: 200 },
          versions: { green },
        }),
      )
    const discover = { dns: NAME, port, intervalMs: INTERVAL_MS }
    write({ discover })
    try {
      proxy = await startProxy(JSON.parse(readFileSync(file, 'utf8')), { source: file })
      await expect.poll(async () => (await instances(proxy!)).length, { message: 'the discovered instance' }).toBe(1)
      // The DNS server is down while the lookup restarts: the proxy stays ready with what it knew.
      await dns.kill()
      write({ discover: { ...discover, intervalMs: INTERVAL_MS + 100 } })
      expect((await admin(proxy, 'POST', '/v1/reload')).status).toBe(200)
      expect((await fetch(`${proxy.adminUrl}/readyz`)).status).toBe(200)
      expect((await instances(proxy)).map((r) => r.source)).toEqual(['dns'])
      await dns.restart()
      // No more discover: the discovered address leaves, the static one stays.
      write({ instances: [{ url: `http://127.0.0.4:${port}` }] })
      expect((await admin(proxy, 'POST', '/v1/reload')).status).toBe(200)
      await expect
        .poll(async () => (await instances(proxy!)).length, {
          message: 'the discovered instance to leave',
          timeout: 10_000,
        })
        .toBe(1)
      expect((await instances(proxy)).map((r) => [r.url, r.source])).toEqual([[`http://127.0.0.4:${port}`, 'config']])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
