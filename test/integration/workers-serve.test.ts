import { type IncomingMessage, request as httpRequest, type ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { accessPids, alive, burst, startWorkers, type WorkersProxy } from '../helpers/workers.js'

/**
 * Several workers are still one proxy to its operator (README "Workers and
 * self-upgrade"): the real CLI with `workers: 2`, real upstreams, requests
 * on connections of their own so the primary hands them to every worker.
 */

function sumOf(text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

async function metricsText(p: WorkersProxy): Promise<string> {
  return (await fetch(`${p.adminUrl}/metrics`)).text()
}

describe('workers: one proxy to its operator', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let p: WorkersProxy
  const probes = { blue: 0, green: 0 }

  beforeAll(async () => {
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    blue.server.on('request', (req) => void (req.url === '/healthz' && probes.blue++))
    green.server.on('request', (req) => void (req.url === '/healthz' && probes.green++))
    p = await startWorkers({
      workers: 2,
      versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
      weights: { blue: 100 },
      health: { intervalMs: 200, timeoutMs: 150 },
      sticky: { keys: ['header:x-user-id'] },
      log: { level: 'info', access: true },
    })
  }, 180_000)
  afterAll(async () => {
    await p?.close()
    await blue?.close()
    await green?.close()
  })

  it('serves from two worker processes, listed in /v1/state and counted by sluice_workers', async () => {
    const state = (await admin(p, 'GET', '/v1/state')).body
    const pids = (state.workers as { pid: number; generation: number }[]).map((w) => w.pid)
    expect(new Set(pids).size).toBe(2)
    expect(pids).not.toContain(p.serve.pid)
    for (const pid of pids) expect(alive(pid)).toBe(true)
    expect(state.restart).toEqual({ status: 'idle', generation: 1 })
    expect(sumOf(await metricsText(p), 'sluice_workers')).toBe(2)

    expect(new Set(await burst(p.url, 40))).toEqual(new Set(['blue']))
    // Both workers answered: each writes its own access-log lines, with its own pid.
    await expect.poll(() => [...accessPids(p.serve.lines, p.serve.pid).keys()].sort()).toEqual([...pids].sort())
  })

  it('a weight change is applied by every worker before the admin answer returns', async () => {
    for (const [to, from] of [
      ['green', 'blue'],
      ['blue', 'green'],
      ['green', 'blue'],
    ] as const) {
      const r = await admin(p, 'PUT', '/v1/weights', { [to]: 100, [from]: 0 })
      expect(r.status).toBe(200)
      // Hundreds of keyless requests right after the answer, spread over both workers: none on the old split.
      const answers = await burst(p.url, 200)
      expect(answers.filter((a) => a !== to)).toEqual([])
    }
  })

  it('a sticky key keeps its version and instance whichever worker takes it', async () => {
    expect((await admin(p, 'PUT', '/v1/weights', { blue: 50, green: 50 })).status).toBe(200)
    const keyed = (key: string) =>
      new Promise<string>((resolve) => {
        const req = httpRequest(p.url, { agent: false, headers: { 'x-user-id': key } }, (res) => {
          res.resume()
          res.on('end', () => resolve(String(res.headers['x-upstream'])))
        })
        req.on('error', (err) => resolve(err.message))
        req.end()
      })
    const seen = new Map<string, Set<string>>()
    // Each key four times on connections of their own: the primary hands them to both workers.
    for (let round = 0; round < 4; round++) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => keyed(`user-${i}`)))
      answers.forEach((a, i) => seen.set(`user-${i}`, (seen.get(`user-${i}`) ?? new Set()).add(a)))
    }
    expect([...seen.values()].filter((s) => s.size !== 1)).toEqual([])
    expect(new Set([...seen.values()].map((s) => [...s][0]))).toEqual(new Set(['blue', 'green']))
  })

  it('/metrics counts exactly the requests sent, summed over the workers', async () => {
    const before = sumOf(await metricsText(p), 'sluice_requests_total')
    const answers = await burst(p.url, 300)
    expect(answers.filter((a) => a === 'blue' || a === 'green')).toHaveLength(300)
    await expect.poll(async () => sumOf(await metricsText(p), 'sluice_requests_total')).toBe(before + 300)
    const text = await metricsText(p)
    expect(sumOf(text, 'sluice_request_duration_seconds_count')).toBe(before + 300)
  })

  it('probes each instance once per interval, not once per worker', async () => {
    const start = { blue: probes.blue, at: Date.now() }
    // Ten probes at 200 ms (+-10% jitter) take at least 1.8 s from one prober; two would take about half.
    await expect.poll(() => probes.blue - start.blue, { timeout: 10_000 }).toBeGreaterThanOrEqual(10)
    expect(Date.now() - start.at).toBeGreaterThan(1_500)
  })

  it('SIGTERM stops the workers and the primary, which exits 0', async () => {
    const pids = (await admin(p, 'GET', '/v1/state')).body.workers.map((w: { pid: number }) => w.pid) as number[]
    expect(await p.serve.stop('SIGTERM')).toBe(0)
    for (const pid of pids) expect(alive(pid)).toBe(false)
  })
})

describe('workers: a rollout judged on all workers together', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let p: WorkersProxy
  const MIN = 30

  beforeAll(async () => {
    blue = await startUpstream('blue')
    green = await startUpstream('green', (req, res) => {
      req.resume()
      res.writeHead(500, { 'x-upstream': 'green' }).end('broken')
    })
    p = await startWorkers({
      workers: 2,
      versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
      weights: { blue: 100 },
      analysis: { intervalMs: 200, minRequests: MIN },
      log: { level: 'info', access: true },
    })
  }, 180_000)
  afterAll(async () => {
    await p?.close()
    await blue?.close()
    await green?.close()
  })

  it('rolls back a failing canary that no single worker saw enough of', async () => {
    const started = await admin(p, 'POST', '/v1/rollout', {
      canary: 'green',
      baseline: 'blue',
      steps: [{ weight: 50, holdMs: 60_000 }, { weight: 100 }],
    })
    expect(started.status).toBe(201)
    // About 38 requests per version, about 19 per version per worker: fewer than minRequests in each worker.
    const answers = await burst(p.url, 76, 1)
    expect(answers.filter((a) => a !== 'blue' && a !== '500')).toEqual([])
    await expect
      .poll(async () => (await admin(p, 'GET', '/v1/state')).body.rollout.status, { timeout: 15_000 })
      .toBe('rolled_back')

    const canaryByWorker = new Map<number, number>()
    for (const line of p.serve.lines) {
      if (!line.includes('"log":"access"')) continue
      const e = JSON.parse(line) as { pid: number; version?: string }
      if (e.version === 'green') canaryByWorker.set(e.pid, (canaryByWorker.get(e.pid) ?? 0) + 1)
    }
    expect(canaryByWorker.size).toBe(2)
    for (const n of canaryByWorker.values()) expect(n).toBeLessThan(MIN)
    const reason = (await admin(p, 'GET', '/v1/state')).body.rollout.reason as string
    expect(reason).toMatch(/error/)
  })
})

describe('workers: mirroring and a rollout’s mirror phase over all workers', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let p: WorkersProxy
  const same = (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"same":true}')
  }

  beforeAll(async () => {
    blue = await startUpstream('blue', same)
    green = await startUpstream('green', same)
    p = await startWorkers({
      workers: 2,
      versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
      weights: { blue: 100 },
      analysis: { intervalMs: 200 },
      rollout: {
        baseline: 'blue',
        canary: 'green',
        steps: [{ weight: 50, holdMs: 60_000 }, { weight: 100 }],
        mirror: { percent: 100, holdMs: 300, minRequests: 30, maxMismatchRate: 0.1 },
      },
    })
  }, 180_000)
  afterAll(async () => {
    await p?.close()
    await blue?.close()
    await green?.close()
  })

  it('sums the copies of every worker in /v1/state.mirror and judges the mirror phase on them', async () => {
    expect((await admin(p, 'PUT', '/v1/mirror', { version: 'green', percent: 100 })).status).toBe(200)
    expect((await burst(p.url, 40)).filter((a) => a !== '?')).toEqual([])
    await expect
      .poll(async () => {
        const m = (await admin(p, 'GET', '/v1/state')).body.mirror
        return [m.copied, m.matched]
      })
      .toEqual([40, 40])
    expect((await admin(p, 'PUT', '/v1/mirror', null)).status).toBe(200)

    expect((await admin(p, 'POST', '/v1/rollout', { canary: 'green' })).status).toBe(201)
    expect((await admin(p, 'GET', '/v1/state')).body.rollout.phase).toBe('mirror')
    const answers = await burst(p.url, 40)
    expect(answers.filter((a) => a !== '?')).toEqual([])
    // Each worker copied about 20: only their sum reaches the phase's 30.
    await expect
      .poll(
        async () => {
          const r = (await admin(p, 'GET', '/v1/state')).body.rollout
          return r.phase === 'steps' ? 'steps' : `${r.status} in ${r.phase}: ${r.reason ?? 'waiting'}`
        },
        { timeout: 15_000 },
      )
      .toBe('steps')
  })
})
