import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore } from './redis-store.js'
import type { StateStore } from './store.js'

/** The store a config asks for: Redis when `redis` is set (several proxies as one), else in process. */
export function createStore(config: Config, log: Logger): StateStore {
  if (!config.redis) return new MemoryStore()
  return new RedisStore({
    url: config.redis.url,
    keyPrefix: config.redis.keyPrefix,
    leaseMs: config.redis.leaseMs,
    slicesTtlMs: config.analysis.windowMs,
    log,
  })
}
