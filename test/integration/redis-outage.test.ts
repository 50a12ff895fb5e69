import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initialState } from '../../src/state/desired.js'
import { RedisStore } from '../../src/state/redis-store.js'
import { steadyLoad } from '../helpers/load.js'
import { type BlueGreenUpstreams, blueGreenUpstreams } from '../helpers/blue-green.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'

/** Fail-static: Redis dying never fails a request, and a Redis that comes back empty is re-seeded. */
describe('proxies sharing a Redis that dies and comes back empty', () => {
  let redis: TestRedis
  let ups: BlueGreenUpstreams
  const proxies: TestProxy[] = []
  const keyPrefix = 'outage:'

  beforeAll(async () => {
    redis = await startRedis()
    ups = await blueGreenUpstreams()
    for (let i = 0; i < 3; i++) {
      proxies.push(
        await startProxy({
          versions: ups.versions,
          weights: { blue: 100 },
          redis: { url: redis.url, keyPrefix },
        }),
      )
    }
  })
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    await redis?.stop()
    await ups?.close()
  })

  const state = async (p: TestProxy) => (await admin(p, 'GET', '/v1/state')).body

  it('serves without a failure through the outage, keeps its state, and reconciles a change made meanwhile', async () => {
    const [a, b, c] = proxies as [TestProxy, TestProxy, TestProxy]
    await admin(a, 'PUT', '/v1/weights', { blue: 80, green: 20 })
    for (const p of proxies)
      await expect.poll(async () => (await state(p)).weights.green, { message: 'the change everywhere' }).toBe(20)

    // One leader at most at any moment, through the outage and the empty restart.
    // (A fresh Redis holds the lease back for one lease period: wait for the first leader.)
    await expect
      .poll(() => proxies.some((p) => p.sluice.store.leader), { message: 'a first leader', timeout: 10_000 })
      .toBeTruthy()
    let mostLeaders = 0
    const sampler = setInterval(() => {
      mostLeaders = Math.max(mostLeaders, proxies.filter((p) => p.sluice.store.leader).length)
    }, 5)
    const loads = proxies.map((p) => steadyLoad({ url: p.url, concurrency: 3 }))
    await expect.poll(() => loads.every((l) => l.result.ok > 20), { message: 'load flowing' }).toBeTruthy()

    await redis.kill()
    for (const p of proxies)
      await expect.poll(async () => (await state(p)).store.up, { message: 'the outage seen' }).toBe(false)
    const metrics = await (await fetch(`${b.adminUrl}/metrics`)).text()
    expect(metrics).toMatch(/^sluice_state_store_up 0$/m)
    expect((await state(b)).weights).toEqual({ blue: 80, green: 20 })

    // A change during the outage applies to that proxy at once.
    const put = await admin(a, 'PUT', '/v1/weights', { blue: 50, green: 50 })
    expect(put.status).toBe(200)
    expect(put.body.weights).toEqual({ blue: 50, green: 50 })
    expect((await state(c)).weights).toEqual({ blue: 80, green: 20 })
    const sentDuringOutage = loads.map((l) => l.result.sent)
    await expect
      .poll(() => loads.every((l, i) => l.result.sent > sentDuringOutage[i]! + 20), {
        message: 'load during the outage',
      })
      .toBeTruthy()

    await redis.restart()
    for (const p of proxies) {
      await expect.poll(async () => {
        const s = await state(p)
        return s.store.up && s.weights.green === 50
      }, { message: 'every proxy converged on the change made during the outage' }).toBeTruthy()
    }
    // Redis was re-seeded with the highest revision, and has the change's audit entry.
    const raw = redis.client()
    const revision = (await state(a)).revision
    expect(Number(await raw.hget(`${keyPrefix}state`, 'revision'))).toBe(revision)
    for (const p of proxies) expect((await state(p)).revision).toBe(revision)
    const audit = (await raw.lrange(`${keyPrefix}audit`, 0, -1)).map((s) => JSON.parse(s))
    expect(audit.at(-1)).toMatchObject({ action: 'weights', source: 'admin', revision, after: { blue: 50, green: 50 } })

    await expect.poll(() => proxies.some((p) => p.sluice.store.leader), { message: 'a leader again' }).toBeTruthy()
    clearInterval(sampler)
    expect(mostLeaders).toBe(1)

    const results = await Promise.all(loads.map((l) => l.stop()))
    for (const r of results) {
      expect(r.failures).toEqual([])
      expect(r.failed).toBe(0)
    }
    expect(results.reduce((n, r) => n + r.ok, 0)).toBeGreaterThan(200)
  })

  it('a Redis that restarts empty within a lease period never gives the lease to a second leader', async () => {
    const log = pino({ level: 'silent' })
    const stores = [0, 1, 2].map(
      () => new RedisStore({ url: redis.url, keyPrefix: 'quick:', log, leaseMs: 3000, connectTimeoutMs: 2000 }),
    )
    try {
      for (const s of stores) await s.init(initialState({ blue: 100 }))
      await expect.poll(() => stores.some((s) => s.leader), { message: 'a leader' }).toBeTruthy()
      const oldToken = Math.max(...stores.map((s) => s.leaderToken))
      let mostLeaders = 0
      const sampler = setInterval(() => {
        mostLeaders = Math.max(mostLeaders, stores.filter((s) => s.leader).length)
      }, 2)
      await redis.restart()
      await expect.poll(() => stores.every((s) => s.up), { message: 'all reconnected', timeout: 5000 }).toBeTruthy()
      // A new holding, with a larger fencing token although the counter was lost.
      await expect
        .poll(() => stores.some((s) => s.leaderToken > oldToken), { message: 'a new leader', timeout: 10_000 })
        .toBeTruthy()
      clearInterval(sampler)
      expect(mostLeaders).toBe(1)
    } finally {
      await Promise.all(stores.map((s) => s.close()))
    }
  })
})
