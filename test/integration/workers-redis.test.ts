import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initialState } from '../../src/state/desired.js'
import { RedisStore } from '../../src/state/redis-store.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { freshGet, startWorkers, type WorkersProxy } from '../helpers/workers.js'

/** With Redis, a proxy with workers is one member of the shared state: its primary, not each worker. */
describe('workers and Redis', () => {
  let redis: TestRedis
  let blue: TestUpstream
  let green: TestUpstream
  let withWorkers: WorkersProxy
  let single: TestProxy
  let reader: RedisStore
  const keyPrefix = `workers-${randomBytes(4).toString('hex')}:`

  beforeAll(async () => {
    redis = await startRedis()
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    const shared = {
      versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
      weights: { blue: 100 },
      redis: { url: redis.url, keyPrefix },
      analysis: { intervalMs: 200 },
    }
    withWorkers = await startWorkers({ ...shared, workers: 2 })
    single = await startProxy(shared)
    reader = new RedisStore({
      url: redis.url,
      keyPrefix,
      log: pino({ level: 'silent' }),
      leaseMs: 1000,
      slicesTtlMs: 60_000,
      connectTimeoutMs: 2000,
    })
    // Connects (the state is already seeded by the proxies: this loads it).
    await reader.init(initialState({ blue: 100, green: 0 }))
  }, 180_000)
  afterAll(async () => {
    await reader?.close()
    await single?.stop()
    await withWorkers?.close()
    await blue?.close()
    await green?.close()
    await redis?.stop()
  })

  it('publishes one slice list for the whole process, with every worker’s requests in it', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, () => freshGet(withWorkers.url)))
    expect(answers.filter((a) => !('status' in a) || a.status !== 200)).toEqual([])
    const requestsOf = (list: { requests: number }[]) => list.reduce((n, s) => n + s.requests, 0)
    // Two proxies share the prefix: two lists, not one per worker; the workers' one holds all 40 requests.
    await expect
      .poll(async () => (await reader.readSlices('blue')).map(requestsOf).sort((a, b) => a - b), { timeout: 10_000 })
      .toEqual([0, 40])
  })

  it('a change made through the other proxy reaches every worker', async () => {
    expect((await admin(single, 'PUT', '/v1/weights', { blue: 0, green: 100 })).status).toBe(200)
    await expect
      .poll(async () => {
        const answers = await Promise.all(Array.from({ length: 40 }, () => freshGet(withWorkers.url)))
        return new Set(answers.map((a) => ('status' in a ? a.upstream : a.error)))
      })
      .toEqual(new Set(['green']))
  })
})
