import { request } from 'undici'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** How a test upstream misbehaves: every `errorEvery`-th request is a 500; every request waits `delayMs`. */
export interface Misbehaviour {
  errorEvery: number
  delayMs: number
}

export interface Recorded {
  upstream: TestUpstream
  mode: Misbehaviour
  /** When each request arrived (epoch ms). */
  arrivals: number[]
  /** When the first 500 was sent. */
  firstErrorAt: number | undefined
}

/** A real upstream that records its arrivals and misbehaves as `mode` says (changeable at run time). */
export async function recordedUpstream(name: string, mode: Partial<Misbehaviour> = {}): Promise<Recorded> {
  const r: Recorded = {
    upstream: undefined as unknown as TestUpstream,
    mode: { errorEvery: 0, delayMs: 0, ...mode },
    arrivals: [],
    firstErrorAt: undefined,
  }
  r.upstream = await startUpstream(name, (req, res) => {
    req.resume()
    r.arrivals.push(Date.now())
    const fail = r.mode.errorEvery > 0 && r.arrivals.length % r.mode.errorEvery === 0
    const answer = () => {
      if (fail) r.firstErrorAt ??= Date.now()
      res.writeHead(fail ? 500 : 200, { 'content-type': 'application/json', 'x-upstream': name })
      res.end(JSON.stringify({ name }))
    }
    if (r.mode.delayMs > 0) setTimeout(answer, r.mode.delayMs)
    else answer()
  })
  return r
}

/**
 * The proxy in front of blue (baseline) and green (canary) with a fast
 * analysis (200 ms interval, 50 requests minimum) so a whole rollout takes
 * a few seconds. Outlier ejection is off: the analysis is what is tested.
 */
export function rolloutProxy(blue: Recorded, green: Recorded, extra: Record<string, unknown> = {}): Promise<TestProxy> {
  return startProxy({
    versions: {
      blue: { instances: [{ url: blue.upstream.url }] },
      green: { instances: [{ url: green.upstream.url }] },
    },
    weights: { blue: 100 },
    sticky: { keys: ['header:x-user-id'] },
    analysis: { intervalMs: 200, windowMs: 10_000, minRequests: 50 },
    outlier: { consecutiveFailures: 0 },
    ...extra,
  })
}

export const FAST_STEPS = [
  { weight: 20, holdMs: 400 },
  { weight: 50, holdMs: 400 },
  { weight: 100, holdMs: 0 },
]

/** Which version each sticky key lands on now (one request per key). */
export async function versionsOf(proxy: TestProxy, keys: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const key of keys) {
    const res = await request(proxy.url + '/', { headers: { 'x-user-id': key } })
    await res.body.text()
    out.set(key, String(res.headers['x-upstream']))
  }
  return out
}

/** The newest audit entry with this action, if any. */
export async function auditEntry(proxy: TestProxy, action: string): Promise<any> {
  const r = await admin(proxy, 'GET', '/v1/audit')
  return (r.body as any[]).findLast((e) => e.action === action)
}

/** The value of one sample line of /metrics, e.g. `sluice_rollbacks_total{version="green"}`. */
export async function metric(proxy: TestProxy, sample: string): Promise<number | undefined> {
  const text = await (await fetch(proxy.adminUrl + '/metrics')).text()
  const line = text.split('\n').find((l) => l.startsWith(sample + ' '))
  return line === undefined ? undefined : Number(line.slice(sample.length + 1))
}

export const USERS = Array.from({ length: 60 }, (_, i) => `user-${i}`)
