import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { SliceSnapshot } from '../../src/analysis/slices.js'
import { type DesiredState, initialState } from '../../src/state/desired.js'
import { RedisStore } from '../../src/state/redis-store.js'
import { idleRollout } from '../../src/rollout/rollout-state.js'
import { startRedis, startRelay, type TcpRelay, type TestRedis } from '../helpers/redis-server.js'
import { entry } from '../unit/state/store-contract.js'

const LEASE_MS = 1000

/** The Redis store's shared parts beyond the desired state: leader lease, partitions, analysis slices. */
describe('stores sharing one Redis', () => {
  let redis: TestRedis
  const open: RedisStore[] = []
  const relays: TcpRelay[] = []
  let logLines: string[] = []

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()))
    await Promise.all(relays.splice(0).map((r) => r.close()))
    logLines = []
  })
  afterAll(async () => {
    await redis?.stop()
  })

  const group = () => `shared-${randomBytes(4).toString('hex')}:`
  const store = (keyPrefix: string, url = redis.url, slicesTtlMs = 60_000) => {
    const log = pino({ level: 'info' }, { write: (line: string) => void logLines.push(line) })
    const s = new RedisStore({ url, keyPrefix, log, leaseMs: LEASE_MS, slicesTtlMs, connectTimeoutMs: 2000 })
    open.push(s)
    return s
  }
  const seed = (): DesiredState => initialState({ blue: 100, green: 0 })

  it('one store at a time leads; when the leader stops, another leads within two lease periods', async () => {
    const prefix = group()
    const stores = [store(prefix), store(prefix), store(prefix)]
    for (const s of stores) await s.init(seed())
    await expect.poll(() => stores.some((s) => s.leader), { message: 'a leader' }).toBeTruthy()
    for (let i = 0; i < 10; i++) {
      expect(stores.filter((s) => s.leader)).toHaveLength(1)
      await new Promise((r) => setTimeout(r, LEASE_MS / 10))
    }
    const leader = stores.find((s) => s.leader)!
    const stoppedAt = Date.now()
    await leader.close()
    const next = await vi.waitFor(
      () => {
        const found = stores.find((s) => s !== leader && s.leader)
        expect(found, 'a new leader').toBeDefined()
        return found!
      },
      { timeout: 2 * LEASE_MS, interval: 20 },
    )
    expect(Date.now() - stoppedAt).toBeLessThan(2 * LEASE_MS)
    expect(stores.filter((s) => s.leader)).toEqual([next])
  })

  it('a leader that loses Redis stops leading, and another leads within two lease periods, never both at once', async () => {
    const prefix = group()
    const relay = await startRelay(redis.port)
    relays.push(relay)
    const a = store(prefix, relay.url)
    await a.init(seed())
    await expect.poll(() => a.leader, { message: 'a leads' }).toBeTruthy()
    const oldToken = a.leaderToken
    const others = [store(prefix), store(prefix)]
    for (const s of others) await s.init(seed())

    const cutAt = Date.now()
    await relay.cut()
    let both = 0
    const next = await vi.waitFor(
      () => {
        if (a.leader && others.some((s) => s.leader)) both++
        const found = others.find((s) => s.leader)
        expect(found, 'another leader').toBeDefined()
        return found!
      },
      { timeout: 2 * LEASE_MS, interval: 5 },
    )
    expect(Date.now() - cutAt).toBeLessThan(2 * LEASE_MS)
    expect(both).toBe(0)
    expect(a.leader).toBe(false)
    expect(next.leaderToken).toBeGreaterThan(oldToken)

    // Back on the network, it follows instead of fighting for the lease.
    await relay.heal()
    await expect.poll(() => a.up, { message: 'a reconnected', timeout: 5000 }).toBeTruthy()
    await new Promise((r) => setTimeout(r, LEASE_MS))
    expect(a.leader).toBe(false)
    expect(next.leader).toBe(true)
  })

  it('a rollback made by a proxy cut off from Redis is re-applied on top of the changes made meanwhile', async () => {
    const prefix = group()
    const relay = await startRelay(redis.port)
    relays.push(relay)
    // A whole rollout state: a peer's state is validated when it arrives.
    const progressing = { ...idleRollout(), status: 'progressing' as const, baseline: 'blue', canary: 'green', step: 1 }
    const start = { ...initialState({ blue: 75, green: 25 }), rollout: progressing }
    const a = store(prefix, relay.url)
    const b = store(prefix)
    await a.init(start)
    await b.init(start)
    const seenByB: DesiredState[] = []
    b.onRemoteChange((s) => seenByB.push(s))

    await relay.cut()
    await expect.poll(() => a.up, { message: 'a sees the outage', timeout: 5000 }).toBe(false)
    const rolledBack = {
      ...a.current(),
      revision: 2,
      weights: { blue: 100, green: 0 },
      rollout: { ...progressing, status: 'rolled_back' as const, reason: 'error rate 0.2 > 0.02' },
    }
    expect(await a.commit(rolledBack, entry(2, 'rollback', 'analysis'))).toMatchObject({ ok: true, pending: true })
    expect(a.current()).toEqual(rolledBack)

    // Meanwhile the others go on: the rollout steps up and an instance is drained.
    const stepped = {
      ...b.current(),
      revision: 2,
      weights: { blue: 50, green: 50 },
      rollout: { ...progressing, step: 2 },
    }
    expect(await b.commit(stepped, entry(2, 'rollout step', 'rollout'))).toEqual({ ok: true })
    const drained = { ...stepped, revision: 3, drained: { versions: [], instances: ['http://10.0.0.1:80'] } }
    expect(await b.commit(drained, entry(3, 'drain'))).toEqual({ ok: true })

    await relay.heal()
    const expected = { ...drained, revision: 4, weights: { blue: 100, green: 0 }, rollout: rolledBack.rollout }
    await expect
      .poll(() => JSON.stringify(b.current()), { message: 'b has the rollback', timeout: 5000 })
      .toBe(JSON.stringify(expected))
    await expect
      .poll(() => JSON.stringify(a.current()), { message: 'a agrees', timeout: 5000 })
      .toBe(JSON.stringify(expected))
    expect(seenByB.at(-1)).toEqual(expected)
    const audit = await b.audit(10)
    expect(audit.map((e) => [e.revision, e.action])).toEqual([
      [2, 'rollout step'],
      [3, 'drain'],
      [4, 'rollback'],
    ])
    expect(logLines.some((l) => l.includes('re-applied on top of the newer shared state'))).toBe(true)
  })

  it('a change made by a proxy cut off from Redis loses to a newer shared change, and that is logged', async () => {
    const prefix = group()
    const relay = await startRelay(redis.port)
    relays.push(relay)
    const a = store(prefix, relay.url)
    const b = store(prefix)
    await a.init(seed())
    await b.init(seed())
    await relay.cut()
    await expect.poll(() => a.up, { message: 'a sees the outage', timeout: 5000 }).toBe(false)
    const mine = { ...a.current(), revision: 2, weights: { blue: 90, green: 10 } }
    expect(await a.commit(mine, entry(2, 'weights'))).toMatchObject({ ok: true, pending: true })
    const theirs = { ...b.current(), revision: 2, weights: { blue: 20, green: 80 } }
    await b.commit(theirs, entry(2, 'weights'))
    const newer = { ...theirs, revision: 3, weights: { blue: 10, green: 90 } }
    await b.commit(newer, entry(3, 'weights'))

    await relay.heal()
    await expect.poll(() => a.up && a.current().revision === 3, { message: 'a catches up', timeout: 5000 }).toBeTruthy()
    expect(a.current()).toEqual(newer)
    expect(b.current()).toEqual(newer)
    const warning = logLines.find((l) => l.includes('were overridden by a newer shared state'))
    expect(JSON.parse(warning!).overridden).toEqual([
      expect.objectContaining({ action: 'weights', revision: 2, after: null }),
    ])
  })

  it('a proxy that starts while Redis is unreachable serves its config state, then joins the shared state', async () => {
    const prefix = group()
    const b = store(prefix)
    await b.init(seed())
    const shared = { ...b.current(), revision: 2, weights: { blue: 60, green: 40 } }
    await b.commit(shared, entry(2, 'weights'))

    const relay = await startRelay(redis.port)
    relays.push(relay)
    await relay.cut()
    const a = store(prefix, relay.url)
    expect(await a.init(seed())).toEqual(seed())
    expect(a.up).toBe(false)
    const applied: DesiredState[] = []
    a.onRemoteChange((s) => applied.push(s))
    await relay.heal()
    await expect.poll(() => a.up, { message: 'a joins', timeout: 5000 }).toBeTruthy()
    expect(a.current()).toEqual(shared)
    expect(applied).toEqual([shared])
  })

  it("every live proxy's analysis slices are read; a proxy that stops publishing falls out", async () => {
    const prefix = group()
    const ttl = 400
    const a = store(prefix, redis.url, ttl)
    const b = store(prefix, redis.url, ttl)
    await a.init(seed())
    await b.init(seed())
    const slice = (requests: number): SliceSnapshot[] => [
      { startMs: 5000, requests, errors: 0, latency: [1, requests] },
    ]
    await a.publishSlices(a.id, { green: slice(10) })
    await b.publishSlices(b.id, { green: slice(20) })
    const both = await a.readSlices('green')
    expect(both.map((l) => l[0]!.requests).sort()).toEqual([10, 20])

    await new Promise((r) => setTimeout(r, ttl + 200))
    await b.publishSlices(b.id, { green: slice(30) })
    expect(await a.readSlices('green')).toEqual([slice(30)])
  })
})
