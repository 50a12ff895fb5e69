import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ctlInProcess } from '../helpers/cli.js'
import { admin, TEST_TOKEN } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { accessPids, burst, freshGet, logLines, startWorkers, type WorkersProxy } from '../helpers/workers.js'
import { faulty } from './outlier-fixture.js'

/**
 * Outlier ejection and mirror mismatches with workers are one proxy's
 * (README "Workers and self-upgrade"): the real CLI with `workers: 2`, real
 * upstreams, requests on connections of their own so the primary hands
 * them to both workers.
 */

const ALWAYS = { kind: '500' as const, rate: 1 }

interface AccessLine {
  pid: number
  instance?: string
  path?: string
}

interface LogLine {
  pid: number
  msg?: string
  instance?: string
  mode?: string
  worker?: number
}

/** Per worker pid, the instances its access-log lines name (those after `from`). */
function instancesByWorker(p: WorkersProxy, from: number): Map<number, Set<string>> {
  const out = new Map<number, Set<string>>()
  for (const l of logLines<AccessLine & { log?: string }>(p.serve.lines.slice(from))) {
    if (l.log !== 'access' || l.pid === p.serve.pid || l.instance === undefined) continue
    out.set(l.pid, (out.get(l.pid) ?? new Set()).add(l.instance))
  }
  return out
}

function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

async function metrics(p: WorkersProxy): Promise<string> {
  return (await fetch(`${p.adminUrl}/metrics`)).text()
}

type InstanceView = { url: string; ejected: boolean; ejectedUntil: string | null; usable: boolean }

async function instances(p: WorkersProxy, version: string): Promise<InstanceView[]> {
  return (await admin(p, 'GET', '/v1/state')).body.versions[version].instances
}

async function workerPids(p: WorkersProxy): Promise<number[]> {
  return ((await admin(p, 'GET', '/v1/state')).body.workers as { pid: number }[]).map((w) => w.pid).sort()
}

/** A `workers: 2` proxy (access log on) over upstreams of its own, for one describe block. */
function proxyFor(
  upstreams: () => Promise<TestUpstream>[],
  config: (urls: string[]) => Record<string, unknown>,
): { ups: TestUpstream[]; p: WorkersProxy } {
  const ctx = { ups: [] as TestUpstream[], p: undefined as unknown as WorkersProxy }
  beforeAll(async () => {
    ctx.ups = await Promise.all(upstreams())
    const urls = ctx.ups.map((u) => u.url)
    ctx.p = await startWorkers({ workers: 2, log: { level: 'info', access: true }, ...config(urls) })
  }, 180_000)
  afterAll(async () => {
    await ctx.p?.close()
    for (const u of ctx.ups) await u.close()
  })
  return ctx
}

const instancesOf = (urls: string[]) => ({ instances: urls.map((url) => ({ url })) })

describe('workers: outlier ejection is one proxy decision', () => {
  const ctx = proxyFor(
    () => [
      startUpstream('b1', faulty('b1', ALWAYS)),
      startUpstream('b2'),
      startUpstream('g1', faulty('g1', ALWAYS)),
      startUpstream('g2', faulty('g2', ALWAYS)),
    ],
    ([b1, b2, g1, g2]) => ({
      versions: { blue: instancesOf([b1!, b2!]), green: instancesOf([g1!, g2!]) },
      weights: { blue: 100 },
      outlier: { consecutiveFailures: 3, ejectionMs: 120_000 },
      analysis: { intervalMs: 200 },
    }),
  )
  let p: WorkersProxy
  let ups: Record<string, TestUpstream>
  beforeAll(() => {
    p = ctx.p
    const [b1, b2, g1, g2] = ctx.ups
    ups = { b1: b1!, b2: b2!, g1: g1!, g2: g2! }
  })

  it('a worker ejects a failing instance, /v1/state and /metrics show it once, and every worker avoids it', async () => {
    const b1 = ups.b1!
    // One request at a time, each on a fresh connection: the workers take turns, each counting its own failures.
    let sent = 0
    while (sent < 100) {
      await freshGet(p.url)
      sent++
      if ((await instances(p, 'blue'))[0]!.ejected) break
    }
    const [b1View, b2View] = await instances(p, 'blue')
    expect(b1View).toMatchObject({ url: b1.url, ejected: true, usable: false })
    expect(Date.parse(b1View!.ejectedUntil!)).toBeGreaterThan(Date.now() + 100_000)
    expect(b2View).toMatchObject({ ejected: false, ejectedUntil: null, usable: true })
    // Three failures on one worker eject it. The other worker stops after at most three of its own: usually
    // fewer, once the primary's record reaches it, but this loop may read /v1/state before the primary has
    // the first worker's report, and send one more request. Either way the proxy records one ejection.
    expect(b1.hits).toBeGreaterThanOrEqual(3)
    expect(b1.hits).toBeLessThanOrEqual(6)
    expect(metricValue(await metrics(p), 'sluice_outlier_ejections_total{version="blue"}')).toBe(1)
    const logged = logLines<LogLine>(p.serve.lines).filter((l) => l.msg === 'instance ejected')
    expect(logged).toEqual([expect.objectContaining({ pid: p.serve.pid, instance: b1.url, mode: 'consecutive' })])
    expect(typeof logged[0]!.worker).toBe('number')

    const hits = b1.hits
    const mark = p.serve.lines.length
    const answers = await burst(p.url, 200)
    expect(answers.filter((a) => a !== 'b2')).toEqual([])
    expect(b1.hits).toBe(hits)
    // Both workers served those requests, and neither sent one to b1.
    await expect.poll(() => [...instancesByWorker(p, mark).keys()].sort()).toEqual(await workerPids(p))
    for (const used of instancesByWorker(p, mark).values()) expect([...used]).toEqual([ups.b2!.url])
  })

  it("the cap holds across workers: of green's two failing instances one is ejected, and every worker uses the other", async () => {
    expect((await admin(p, 'PUT', '/v1/weights', { blue: 0, green: 100 })).status).toBe(200)
    // In parallel: both workers fail both instances at once, each may eject one of its own before hearing of the other's.
    const seen: number[] = []
    await Promise.all([
      burst(p.url, 200),
      (async () => {
        for (let i = 0; i < 20; i++) seen.push((await instances(p, 'green')).filter((x) => x.ejected).length)
      })(),
    ])
    await expect.poll(async () => (await instances(p, 'green')).filter((x) => x.ejected).length).toBe(1)
    expect(Math.max(...seen)).toBeLessThanOrEqual(1)
    expect(metricValue(await metrics(p), 'sluice_outlier_ejections_total{version="green"}')).toBe(1)
    const refused = logLines<LogLine>(p.serve.lines).filter((l) => l.msg?.startsWith("a worker's ejection is refused"))
    console.log(`cap across workers: ${refused.length} worker ejection(s) refused by the primary and taken back`)

    // Every worker sends green's traffic to the one instance the proxy kept (the refused ejections were taken back).
    const kept = (await instances(p, 'green')).find((x) => !x.ejected)!.url
    const mark = p.serve.lines.length
    await burst(p.url, 100)
    await expect.poll(() => [...instancesByWorker(p, mark).keys()].sort()).toEqual(await workerPids(p))
    for (const used of instancesByWorker(p, mark).values()) expect([...used]).toEqual([kept])
    expect((await admin(p, 'PUT', '/v1/weights', { blue: 100, green: 0 })).status).toBe(200)
  })

  it('a worker replaced by a restart honours the live ejections from its first request', async () => {
    const before = await workerPids(p)
    expect((await admin(p, 'POST', '/v1/restart')).status).toBe(202)
    await expect
      .poll(async () => (await admin(p, 'GET', '/v1/state')).body.restart, { timeout: 30_000 })
      .toEqual({ status: 'idle', generation: 2 })
    const after = await workerPids(p)
    expect(after.filter((pid) => before.includes(pid))).toEqual([])
    expect((await instances(p, 'blue'))[0]!.ejected).toBe(true)

    const hits = ups.b1!.hits
    const mark = p.serve.lines.length
    const answers = await burst(p.url, 100)
    expect(answers.filter((a) => a !== 'b2')).toEqual([])
    expect(ups.b1!.hits).toBe(hits)
    await expect.poll(() => [...instancesByWorker(p, mark).keys()].sort()).toEqual(after)
  })
})

describe('workers: GET /v1/mirror/mismatches lists the workers’ mismatches', () => {
  const ctx = proxyFor(
    // The shadow answers 500 where blue answers 200: every copy is a mismatch on `status`.
    () => [startUpstream('blue'), startUpstream('green', faulty('green', ALWAYS))],
    ([blue, green]) => ({
      versions: { blue: instancesOf([blue!]), green: instancesOf([green!]) },
      mirror: { version: 'green', percent: 100 },
      weights: { blue: 100 },
      analysis: { intervalMs: 200 },
    }),
  )
  let p: WorkersProxy
  beforeAll(() => void (p = ctx.p))

  type Entry = { at: string; path: string; differs: string[]; shadowStatus: number }
  const list = async (): Promise<Entry[]> => (await admin(p, 'GET', '/v1/mirror/mismatches')).body.mismatches

  it('every worker’s mismatches, in time order; `sluice ctl mirror mismatches` shows them', async () => {
    const mark = p.serve.lines.length
    const paths = Array.from({ length: 30 }, (_, i) => `/m/${i}`)
    const answers = await Promise.all(paths.map((path) => freshGet(p.url + path)))
    expect(answers.every((a) => 'status' in a && a.status === 200)).toBe(true)
    await expect.poll(async () => (await list()).length).toBe(30)
    const entries = await list()
    expect(new Set(entries.map((e) => e.path))).toEqual(new Set(paths))
    expect(entries.map((e) => e.at)).toEqual(entries.map((e) => e.at).sort())
    expect(entries.every((e) => e.shadowStatus === 500 && e.differs.includes('status'))).toBe(true)
    // Both workers mirrored some of them.
    const served = accessPids(p.serve.lines.slice(mark), p.serve.pid)
    expect([...served.keys()].sort()).toEqual(await workerPids(p))
    expect((await admin(p, 'GET', '/v1/state')).body.mirror.mismatches).toBe(30)

    const ctl = await ctlInProcess(['mirror', 'mismatches'], { SLUICE_ADMIN_URL: p.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN })
    expect(ctl.code).toBe(0)
    for (const path of ['/m/0', '/m/29']) expect(ctl.stdout).toMatch(new RegExp(`${path}\\b`))
  })

  it('a flood keeps the newest 50, still in time order', async () => {
    await burst(p.url, 120)
    await expect.poll(async () => (await admin(p, 'GET', '/v1/state')).body.mirror.mismatches).toBe(150)
    await expect.poll(async () => (await list()).filter((e) => !e.path.startsWith('/m/')).length).toBe(50)
    const entries = await list()
    expect(entries).toHaveLength(50)
    expect(entries.map((e) => e.at)).toEqual(entries.map((e) => e.at).sort())
  })
})

describe("workers: the peer rule judges every worker's requests together", () => {
  const PEERS = { intervalMs: 1_000, minRequests: 100, abovePeersPercent: 20 }
  const ctx = proxyFor(
    () => [startUpstream('b1', faulty('b1', ALWAYS)), startUpstream('b2'), startUpstream('b3')],
    (urls) => ({
      versions: { blue: instancesOf(urls) },
      // Only the peer rule: the consecutive one would act first on an instance failing everything.
      outlier: { consecutiveFailures: 0, ejectionMs: 120_000, peers: PEERS },
      analysis: { intervalMs: 100 },
    }),
  )
  let p: WorkersProxy
  let ups: TestUpstream[]
  beforeAll(() => {
    p = ctx.p
    ups = ctx.ups
  })

  it('the primary ejects on the summed counts, more than either worker sent it; every worker then avoids it', async () => {
    const b1 = ups[0]!
    for (let i = 0; i < 100 && !(await instances(p, 'blue'))[0]!.ejected; i++) await burst(p.url, 40)
    expect((await instances(p, 'blue'))[0]!.ejected).toBe(true)
    type Line = LogLine & { time: string; requests: number; log?: string }
    const lines = logLines<Line>(p.serve.lines)
    const ejected = lines.filter((l) => l.msg === 'instance ejected')
    expect(ejected).toEqual([expect.objectContaining({ pid: p.serve.pid, instance: b1.url, mode: 'peers' })])
    expect(metricValue(await metrics(p), 'sluice_outlier_ejections_total{version="blue"}')).toBe(1)
    // The interval judged (plus a report's lag either side) held more of b1's requests than either worker sent it.
    const e = ejected[0]!
    const to = Date.parse(e.time)
    const from = to - PEERS.intervalMs - 500
    const perWorker = new Map<number, number>()
    for (const l of lines) {
      const at = Date.parse(l.time)
      if (l.log === 'access' && l.instance === b1.url && at > from && at <= to)
        perWorker.set(l.pid, (perWorker.get(l.pid) ?? 0) + 1)
    }
    console.log(`peer rule with 2 workers: judged ${e.requests} requests to b1; by worker in that span: ${[...perWorker.values()]}`)
    expect(e.requests).toBeGreaterThanOrEqual(PEERS.minRequests)
    expect(perWorker.size).toBe(2)
    expect(e.requests).toBeGreaterThan(Math.max(...perWorker.values()))

    const hits = b1.hits
    const answers = await burst(p.url, 100)
    expect(answers.filter((a) => a !== 'b2' && a !== 'b3')).toEqual([])
    expect(b1.hits).toBe(hits)
  })
})
