import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore } from './redis-store.js'
import { StateFile } from './state-file.js'
import type { StateStore } from './store.js'

/**
 * The store a config asks for: Redis when `redis` is set (several proxies
 * as one; `state.file` is then not used), else in process, kept in
 * `state.file` when it is set.
 */
export function createStore(config: Config, log: Logger): StateStore {
  const file = config.state.file
  if (!config.redis) return new MemoryStore({ file: file === undefined ? undefined : new StateFile(file) })
  if (file !== undefined) log.info({ stateFile: file }, 'state.file is not used: redis holds the shared state')
  return new RedisStore({
    url: config.redis.url,
    keyPrefix: config.redis.keyPrefix,
    leaseMs: config.redis.leaseMs,
    slicesTtlMs: config.analysis.windowMs,
    log,
  })
}
