import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { initialState } from '../../src/state/desired.js'
import { RedisStore } from '../../src/state/redis-store.js'
import type { DesiredState } from '../../src/state/types.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'
import { entry } from '../unit/state/store-contract.js'

describe('a state in Redis that is not a valid desired state', () => {
  let redis: TestRedis
  const open: RedisStore[] = []
  let lines: string[] = []

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()))
    lines = []
  })
  afterAll(async () => {
    await redis?.stop()
  })

  const store = (keyPrefix: string) => {
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) })
    const s = new RedisStore({ url: redis.url, keyPrefix, log, leaseMs: 1000, connectTimeoutMs: 2000, pollMs: 100 })
    open.push(s)
    return s
  }

  it('is never applied: the proxy keeps its last valid state and reports the store down', async () => {
    const prefix = `invalid-${randomBytes(4).toString('hex')}:`
    const writer = store(prefix)
    const reader = store(prefix)
    const seed = initialState({ blue: 100, green: 0 })
    await writer.init(seed)
    await reader.init(seed)
    expect(reader.up).toBe(true)

    // A peer (a broken or foreign release) commits a rollout that is not one.
    const broken = { ...seed, revision: 2, rollout: { status: 'sideways' } } as unknown as DesiredState
    expect(await writer.commit(broken, entry(2, 'rollout.start'))).toEqual({ ok: true })

    await expect.poll(() => reader.up, { timeout: 5000 }).toBe(false)
    expect(reader.current()).toEqual(seed)
    const logged = lines.join('')
    expect(logged).toContain('rollout.status')
  })
})
