import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { admin, type TestProxy } from '../helpers/proxy.js'
import type { TestUpstream } from '../helpers/upstream.js'

/** Parses Prometheus text into name{labels} -> value (labels sorted, as written). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

function types(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!)
  return out
}

async function scrape(p: TestProxy): Promise<{ text: string; values: Map<string, number> }> {
  const res = await fetch(`${p.adminUrl}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
  const text = await res.text()
  return { text, values: parseMetrics(text) }
}

describe('/metrics for Prometheus', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let proxy: TestProxy
  let f: BlueGreen

  beforeAll(async () => {
    f = await blueGreen(
      {
        weights: { blue: 50, green: 50 },
        health: { path: '/healthz', intervalMs: 200, timeoutMs: 100, healthyThreshold: 1, unhealthyThreshold: 1 },
      },
      {
        green: (req, res) => {
          req.resume()
          res.writeHead(req.url === '/fail' ? 503 : 200, { 'x-upstream': 'green' })
          res.end('green')
        },
      },
    )
    ;({ blue, green, proxy } = f)
    // The figures below count both versions as probed healthy: a proxy that never gets there fails here.
    await vi.waitFor(
      async () => {
        if ((await admin(proxy, 'GET', '/readyz')).status !== 200) throw new Error('the proxy never became ready')
      },
      { timeout: 10_000, interval: 20 },
    )
  })
  afterAll(() => f?.close())

  it('exposes every metric the README lists, with its type', async () => {
    const { text } = await scrape(proxy)
    const t = types(text)
    expect(t.get('sluice_requests_total')).toBe('counter')
    expect(t.get('sluice_request_duration_seconds')).toBe('histogram')
    expect(t.get('sluice_inflight_requests')).toBe('gauge')
    expect(t.get('sluice_version_weight')).toBe('gauge')
    expect(t.get('sluice_upstream_healthy')).toBe('gauge')
    expect(t.get('sluice_websocket_connections')).toBe('gauge')
    expect(t.get('sluice_rollbacks_total')).toBe('counter')
    expect(t.get('sluice_rollout_step')).toBe('gauge')
    expect(t.get('sluice_mirror_requests_total')).toBe('counter')
    // process defaults
    expect(t.get('process_cpu_user_seconds_total')).toBe('counter')
  })

  it('counts requests by version and code, with durations, and follows a weight change', async () => {
    for (let i = 0; i < 20; i++) await (await fetch(`${proxy.url}/`)).text()
    await (await fetch(`${proxy.url}/fail`, { headers: { cookie: 'x=1' } })).text()
    let { values } = await scrape(proxy)
    const blueOk = values.get('sluice_requests_total{version="blue",code="200"}') ?? 0
    const greenOk = values.get('sluice_requests_total{version="green",code="200"}') ?? 0
    let total = 0
    for (const [k, v] of values) if (k.startsWith('sluice_requests_total{')) total += v
    expect(total).toBe(21)
    expect(blueOk + greenOk).toBeGreaterThanOrEqual(19)
    expect(values.get('sluice_request_duration_seconds_count{version="blue"}')).toBe(blueOk)
    expect(values.get('sluice_request_duration_seconds_bucket{le="+Inf",version="blue"}')).toBe(blueOk)
    expect(values.get('sluice_version_weight{version="blue"}')).toBe(50)
    expect(values.get(`sluice_upstream_healthy{version="green",upstream="${green.url}"}`)).toBe(1)
    expect(values.get('sluice_inflight_requests{version="blue"}')).toBe(0)
    expect(values.get('sluice_websocket_connections{version="green"}')).toBe(0)

    expect((await admin(proxy, 'PUT', '/v1/weights', { blue: 10, green: 90 })).status).toBe(200)
    ;({ values } = await scrape(proxy))
    expect(values.get('sluice_version_weight{version="blue"}')).toBe(10)
    expect(values.get('sluice_version_weight{version="green"}')).toBe(90)
  })

  it('turns sluice_upstream_healthy to 0 when probes fail', async () => {
    blue.healthy = false
    try {
      await expect
        .poll(async () => (await scrape(proxy)).values.get(`sluice_upstream_healthy{version="blue",upstream="${blue.url}"}`))
        .toBe(0)
    } finally {
      blue.healthy = true
    }
  })
})
