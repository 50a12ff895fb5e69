import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type BlueGreenUpstreams, blueGreenUpstreams } from '../helpers/blue-green.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'

/** The proxy that holds the lease, once one does. */
const leaderOf = (ps: TestProxy[]) =>
  vi.waitFor(
    async () => {
      for (const p of ps) if ((await admin(p, 'GET', '/v1/state')).body.store.leader) return p
      throw new Error('no leader yet')
    },
    { timeout: 10_000, interval: 20 },
  )

/** Waits until a call of `spy` made from now on has returned. */
const nextCallDone = async (spy: { mock: { calls: unknown[]; settledResults: { type: string }[] } }) => {
  const before = spy.mock.calls.length
  await expect.poll(() => spy.mock.settledResults.filter((r) => r.type !== 'incomplete').length).toBeGreaterThan(before)
}

/**
 * Several proxies as one rollout: the verdict is computed on the sum of
 * their traffic, and a leader's death does not stop the rollout.
 */
describe('a rollout across proxies sharing Redis', () => {
  let redis: TestRedis
  let ups: BlueGreenUpstreams
  const proxies: TestProxy[] = []

  beforeAll(async () => {
    redis = await startRedis()
    ups = await blueGreenUpstreams({
      green: (req, res) => {
        req.resume()
        res.writeHead(500, { 'x-upstream': 'green' })
        res.end('broken')
      },
    })
  })
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    await ups?.close()
    await redis?.stop()
  })

  const start = async (keyPrefix: string) => {
    const p = await startProxy({
      versions: ups.versions,
      weights: { blue: 100 },
      // Ejection would end the test on its own ("canary without instances"); this one is about the figures.
      outlier: { consecutiveFailures: 0 },
      analysis: { intervalMs: 200, windowMs: 30_000, minRequests: 60 },
      rollout: { baseline: 'blue', canary: 'green', steps: [{ weight: 50, holdMs: 60_000 }, { weight: 100 }] },
      redis: { url: redis.url, keyPrefix, leaseMs: 1000 },
    })
    proxies.push(p)
    return p
  }

  const send = async (p: TestProxy, n: number) => {
    for (let i = 0; i < n; i++) await (await fetch(`${p.url}/`)).text()
  }

  it('judges the canary on the sum of both proxies, which neither carries alone', async () => {
    const prefix = `rollout-${randomBytes(4).toString('hex')}:`
    const a = await start(prefix)
    const b = await start(prefix)
    expect((await admin(a, 'POST', '/v1/rollout', { canary: 'green' })).status).toBe(201)
    await expect
      .poll(async () => (await admin(b, 'GET', '/v1/state')).body.weights.green, { message: 'the step on b' })
      .toBe(50)

    // 80 requests through a: 40 reach green, below minRequests (60), so no verdict.
    const published = vi.spyOn(a.sluice.store, 'publishSlices')
    const verdicts = vi.spyOn((await leaderOf([a, b])).rollout, 'tick')
    await send(a, 80)
    // Judged on them: a published its slices after the last request, then the leader ran a whole verdict.
    await nextCallDone(published)
    await nextCallDone(verdicts)
    published.mockRestore()
    verdicts.mockRestore()
    expect((await admin(a, 'GET', '/v1/state')).body.rollout.status).toBe('progressing')

    // 80 more through b: 80 green requests across the two, every one an error.
    await send(b, 80)
    const rolled = await vi.waitFor(
      async () => {
        const s = (await admin(a, 'GET', '/v1/state')).body
        expect(s.rollout.status, 'the rollback').toBe('rolled_back')
        return s
      },
      { timeout: 10_000, interval: 20 },
    )
    expect(rolled.weights).toEqual({ blue: 100, green: 0 })
    expect(rolled.rollout.reason).toMatch(/error rate/)
    // The reason names the pooled sample: at least both proxies' 40 each.
    const sizes = [...String(rolled.rollout.reason).matchAll(/(\d+) vs (\d+) requests/g)].map((m) => Number(m[1]))
    expect(Math.max(...sizes)).toBeGreaterThanOrEqual(60)
    await expect
      .poll(async () => (await admin(b, 'GET', '/v1/state')).body.weights.green, { message: 'b to follow' })
      .toBe(0)
  })
})

describe('rollout leader failover', () => {
  let redis: TestRedis
  let ups: BlueGreenUpstreams
  const proxies: TestProxy[] = []

  beforeAll(async () => {
    redis = await startRedis()
    ups = await blueGreenUpstreams()
  })
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    await ups?.close()
    await redis?.stop()
  })

  it('when the leader dies mid-rollout, another proxy continues from the stored step and promotes', async () => {
    const keyPrefix = `failover-${randomBytes(4).toString('hex')}:`
    for (let i = 0; i < 2; i++) {
      proxies.push(
        await startProxy({
          versions: ups.versions,
          weights: { blue: 100 },
          analysis: { intervalMs: 200, windowMs: 30_000, minRequests: 20 },
          rollout: {
            baseline: 'blue',
            canary: 'green',
            steps: [
              { weight: 25, holdMs: 800 },
              { weight: 50, holdMs: 800 },
              { weight: 100 },
            ],
          },
          redis: { url: redis.url, keyPrefix, leaseMs: 600 },
        }),
      )
    }
    const [a, b] = proxies as [TestProxy, TestProxy]
    const leader = await leaderOf([a, b])
    const follower = leader === a ? b : a
    expect((await admin(follower, 'POST', '/v1/rollout', { canary: 'green' })).status).toBe(201)

    let running = true
    const traffic = (async () => {
      while (running) {
        for (const p of [a, b]) {
          if (p === leader && leader.sluice.status !== 'running') continue
          await fetch(`${p.url}/`).then((r) => r.text(), () => undefined)
        }
      }
    })()
    await expect
      .poll(async () => (await admin(follower, 'GET', '/v1/state')).body.rollout.step, {
        message: 'step 1',
        timeout: 15_000,
      })
      .toBe(1)
    await leader.stop()
    const done = await vi.waitFor(
      async () => {
        const s = (await admin(follower, 'GET', '/v1/state')).body
        expect(s.rollout.status, 'the promotion by the surviving proxy').toBe('promoted')
        return s
      },
      { timeout: 20_000, interval: 20 },
    )
    running = false
    await traffic
    expect(done.weights).toEqual({ blue: 0, green: 100 })
    expect(done.store.leader).toBe(true)
    const history = (await admin(follower, 'GET', '/v1/rollouts')).body as any[]
    expect(history.at(-1)).toMatchObject({ outcome: 'promoted' })
  })
})
