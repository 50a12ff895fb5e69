import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { steadyLoad } from '../helpers/load.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/** Fail-static: Redis dying never fails a request, and a Redis that comes back empty is re-seeded. */
describe('proxies sharing a Redis that dies and comes back empty', () => {
  let redis: TestRedis
  let blue: TestUpstream
  let green: TestUpstream
  const proxies: TestProxy[] = []
  const keyPrefix = 'outage:'

  beforeAll(async () => {
    redis = await startRedis()
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    for (let i = 0; i < 3; i++) {
      proxies.push(
        await startProxy({
          versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
          weights: { blue: 100 },
          redis: { url: redis.url, keyPrefix },
        }),
      )
    }
  })
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    await redis?.stop()
    await blue?.close()
    await green?.close()
  })

  const state = async (p: TestProxy) => (await admin(p, 'GET', '/v1/state')).body

  it('serves without a failure through the outage, keeps its state, and reconciles a change made meanwhile', async () => {
    const [a, b, c] = proxies as [TestProxy, TestProxy, TestProxy]
    await admin(a, 'PUT', '/v1/weights', { blue: 80, green: 20 })
    for (const p of proxies) await waitFor(async () => (await state(p)).weights.green === 20, 'the change everywhere')

    const loads = proxies.map((p) => steadyLoad({ url: p.url, concurrency: 3 }))
    await waitFor(() => loads.every((l) => l.result.ok > 20), 'load flowing')

    await redis.kill()
    for (const p of proxies) await waitFor(async () => (await state(p)).store.up === false, 'the outage seen')
    const metrics = await (await fetch(`${b.adminUrl}/metrics`)).text()
    expect(metrics).toMatch(/^sluice_state_store_up 0$/m)
    expect((await state(b)).weights).toEqual({ blue: 80, green: 20 })

    // A change during the outage applies to that proxy at once.
    const put = await admin(a, 'PUT', '/v1/weights', { blue: 50, green: 50 })
    expect(put.status).toBe(200)
    expect(put.body.weights).toEqual({ blue: 50, green: 50 })
    expect((await state(c)).weights).toEqual({ blue: 80, green: 20 })
    const sentDuringOutage = loads.map((l) => l.result.sent)
    await waitFor(() => loads.every((l, i) => l.result.sent > sentDuringOutage[i]! + 20), 'load during the outage')

    await redis.restart()
    for (const p of proxies) {
      await waitFor(async () => {
        const s = await state(p)
        return s.store.up && s.weights.green === 50
      }, 'every proxy converged on the change made during the outage')
    }
    // Redis was re-seeded with the highest revision, and has the change's audit entry.
    const raw = redis.client()
    const revision = (await state(a)).revision
    expect(Number(await raw.hget(`${keyPrefix}state`, 'revision'))).toBe(revision)
    for (const p of proxies) expect((await state(p)).revision).toBe(revision)
    const audit = (await raw.lrange(`${keyPrefix}audit`, 0, -1)).map((s) => JSON.parse(s))
    expect(audit.at(-1)).toMatchObject({ action: 'weights', source: 'admin', revision, after: { blue: 50, green: 50 } })

    const results = await Promise.all(loads.map((l) => l.stop()))
    for (const r of results) {
      expect(r.failures).toEqual([])
      expect(r.failed).toBe(0)
    }
    expect(results.reduce((n, r) => n + r.ok, 0)).toBeGreaterThan(200)
  })
})
