import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type BlueGreenUpstreams, blueGreenUpstreams } from '../helpers/blue-green.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'

/** Several proxies sharing one Redis act as one: README, "Several proxies (Redis)". */
describe('proxies sharing Redis', () => {
  let redis: TestRedis
  let ups: BlueGreenUpstreams
  const proxies: TestProxy[] = []

  beforeAll(async () => {
    redis = await startRedis()
    ups = await blueGreenUpstreams()
  })
  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.stop()))
  })
  afterAll(async () => {
    await redis?.stop()
    await ups?.close()
  })

  const cluster = async (n: number, keyPrefix = `prop-${randomBytes(4).toString('hex')}:`) => {
    const started: TestProxy[] = []
    for (let i = 0; i < n; i++) {
      const p = await startProxy({
        versions: ups.versions,
        weights: { blue: 100 },
        redis: { url: redis.url, keyPrefix },
      })
      proxies.push(p)
      started.push(p)
    }
    return started
  }

  const weightsOf = async (p: TestProxy) => (await admin(p, 'GET', '/v1/state')).body.weights

  /** Writes new weights the way a commit writes them, but never publishes them: only a poll brings them. */
  const writeUnpublished = async (keyPrefix: string, weights: Record<string, number>) => {
    const raw = redis.client()
    const shared = JSON.parse((await raw.hget(`${keyPrefix}state`, 'json'))!)
    const next = { ...shared, revision: shared.revision + 1, weights }
    await raw.hset(`${keyPrefix}state`, 'revision', next.revision, 'json', JSON.stringify(next))
  }

  it('a weight change through one proxy reaches every proxy within one second, and their traffic follows', async () => {
    const [a, b, c] = await cluster(3)
    const state = (await admin(b!, 'GET', '/v1/state')).body
    expect(state.store).toMatchObject({ kind: 'redis', up: true })
    expect(typeof state.store.leader).toBe('boolean')

    const put = await admin(a!, 'PUT', '/v1/weights', { blue: 0, green: 100 })
    expect(put.status).toBe(200)
    const changedAt = Date.now()
    for (const p of [b!, c!]) {
      await expect
        .poll(async () => (await weightsOf(p)).green, {
          message: 'the change on every proxy',
          timeout: 1000 - (Date.now() - changedAt),
        })
        .toBe(100)
    }
    expect(Date.now() - changedAt).toBeLessThan(1000)
    const res = await fetch(c!.url + '/')
    expect(res.headers.get('x-upstream')).toBe('green')
    await res.text()
  })

  it('a drain through one proxy applies on all, and the shared audit keeps the original source', async () => {
    const [a, b] = await cluster(2)
    expect((await admin(b!, 'POST', '/v1/drain', { version: 'green' })).status).toBe(200)
    await expect
      .poll(async () => (await admin(a!, 'GET', '/v1/state')).body.versions.green.draining, {
        message: 'drain on a',
        timeout: 1000,
      })
      .toBeTruthy()
    const audit = (await admin(a!, 'GET', '/v1/audit')).body as { action: string; source: string }[]
    expect(audit.at(-1)).toMatchObject({ action: 'drain', source: 'admin' })
  })

  it('a change whose message is lost still reaches every proxy, by polling', async () => {
    const keyPrefix = `lost-${randomBytes(4).toString('hex')}:`
    const [a, b] = await cluster(2, keyPrefix)
    await writeUnpublished(keyPrefix, { blue: 30, green: 70 })
    const writtenAt = Date.now()
    for (const p of [a!, b!])
      await expect
        .poll(async () => (await weightsOf(p)).green, { message: 'the polled change', timeout: 3000 })
        .toBe(70)
    expect(Date.now() - writtenAt).toBeLessThan(1000)
  })

  it('two clusters with different key prefixes on one Redis do not see each other', async () => {
    const prefixA = `a-${randomBytes(4).toString('hex')}:`
    const [a1, a2] = await cluster(2, prefixA)
    const [b1, b2] = await cluster(2)
    await admin(a1!, 'PUT', '/v1/weights', { blue: 40, green: 60 })
    await expect
      .poll(async () => (await weightsOf(a2!)).green, { message: 'the change within cluster a', timeout: 1000 })
      .toBe(60)
    await admin(b1!, 'PUT', '/v1/weights', { blue: 90, green: 10 })
    // Published: the other proxy of cluster b has it.
    await expect
      .poll(async () => (await weightsOf(b2!)).green, { message: 'the change within cluster b', timeout: 1000 })
      .toBe(10)
    // A change in cluster a that only a poll brings: once both show it, both polled Redis after b's change.
    await writeUnpublished(prefixA, { blue: 45, green: 55 })
    for (const p of [a1!, a2!])
      await expect
        .poll(async () => (await weightsOf(p)).green, { message: 'the polled change in cluster a', timeout: 3000 })
        .toBe(55)
    expect(await weightsOf(a1!)).toEqual({ blue: 45, green: 55 })
    expect(await weightsOf(a2!)).toEqual({ blue: 45, green: 55 })
    expect(await weightsOf(b1!)).toEqual({ blue: 90, green: 10 })
    expect((await admin(b1!, 'GET', '/v1/audit')).body).toHaveLength(1)
  })
})
