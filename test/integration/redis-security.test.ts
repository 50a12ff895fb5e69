import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { initialState } from '../../src/state/desired.js'
import { RedisStore } from '../../src/state/redis-store.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'
import { entry } from '../unit/state/store-contract.js'

describe('a Redis with a password, over TLS', () => {
  let redis: TestRedis
  const open: RedisStore[] = []
  beforeAll(async () => {
    redis = await startRedis({ password: 's3cret', tls: true })
  })
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()))
  })
  afterAll(async () => {
    await redis?.stop()
  })

  const store = (url: string, keyPrefix: string) => {
    const s = new RedisStore({
      url,
      keyPrefix,
      log: pino({ level: 'silent' }),
      tls: { ca: redis.ca! },
      connectTimeoutMs: 1500,
    })
    open.push(s)
    return s
  }

  it('rediss:// with the password in the URL shares changes between proxies', async () => {
    expect(redis.url).toMatch(/^rediss:\/\/:s3cret@127\.0\.0\.1:\d+$/)
    const prefix = `tls-${randomBytes(4).toString('hex')}:`
    const a = store(redis.url, prefix)
    const b = store(redis.url, prefix)
    const seed = initialState({ blue: 100, green: 0 })
    await a.init(seed)
    await b.init(seed)
    expect(a.up && b.up).toBe(true)
    const next = { ...seed, revision: 2, weights: { blue: 0, green: 100 } }
    expect(await a.commit(next, entry(2, 'weights'))).toEqual({ ok: true })
    await expect.poll(() => b.current().revision, { message: 'the change over TLS', timeout: 1000 }).toBe(2)
    expect(b.current()).toEqual(next)
  })

  it('a wrong password leaves the proxy serving its own state, reported as down', async () => {
    const wrong = redis.url.replace('s3cret', 'wrong')
    const s = store(wrong, 'wrong:')
    const seed = initialState({ blue: 100 })
    expect(await s.init(seed)).toEqual(seed)
    expect(s.up).toBe(false)
    expect(s.leader).toBe(false)
    expect(await s.commit({ ...seed, revision: 2 }, entry(2, 'weights'))).toMatchObject({ ok: true, pending: true })
    expect(s.current().revision).toBe(2)
  })

  it('without the certificate authority, the connection is refused rather than trusted blindly', async () => {
    const s = new RedisStore({
      url: redis.url,
      keyPrefix: 'untrusted:',
      log: pino({ level: 'silent' }),
      connectTimeoutMs: 1000,
    })
    open.push(s)
    await s.init(initialState({ blue: 100 }))
    expect(s.up).toBe(false)
  })
})
