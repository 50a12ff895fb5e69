import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, beforeAll } from 'vitest'
import { RedisStore } from '../../../src/state/redis-store.js'
import { startRedis, type TestRedis } from '../../helpers/redis-server.js'
import { storeContract } from './store-contract.js'

let redis: TestRedis
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

// Each store gets its own key prefix: an empty store on a shared redis-server.
storeContract(
  'redis',
  async () =>
    new RedisStore({
      url: redis.url,
      keyPrefix: `contract-${randomBytes(4).toString('hex')}:`,
      log: pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' }),
      leaseMs: 300,
    }),
)
