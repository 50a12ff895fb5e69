import type { Logger } from 'pino'
import type { AdminServer } from '../admin/server.js'
import type { Config } from '../config/load.js'
import type { RolloutDriver } from '../rollout/driver.js'
import type { StateStore } from '../state/store.js'
import { assemble } from './assemble.js'
import type { Sluice } from './sluice.js'
import type { WorkerPool } from './worker-pool.js'

export interface Running {
  readonly sluice: Sluice
  readonly admin: AdminServer
  /** Runs rollouts; it reads the mirror's figures itself during a rollout's mirror phase. */
  readonly rollout: RolloutDriver
  /** The workers, when the proxy runs them (`workers`). */
  readonly pool: WorkerPool | undefined
  readonly port: number
  readonly adminPort: number
  /** Graceful stop; a second call waits on the same stop. */
  stop(): Promise<void>
}

export interface RunOptions {
  log: Logger
  store?: StateStore
  /** Worker processes serving the public listener; without it one process does everything. */
  workers?: number
}

/** Starts a proxy and its admin listener from a validated config: what `sluice serve` runs. Assembled in ./assemble.ts. */
export async function runSluice(config: Config, opts: RunOptions): Promise<Running> {
  const proxy = await assemble(config, opts)
  const { port, adminPort } = await proxy.start()
  opts.log.info(
    { port, adminPort, versions: config.versions.map((v) => v.name), workers: opts.workers ?? 1 },
    'listening',
  )
  let stopped: Promise<void> | undefined
  return {
    sluice: proxy.sluice,
    admin: proxy.admin,
    rollout: proxy.rollout,
    pool: proxy.pool,
    port,
    adminPort,
    stop() {
      stopped ??= (async () => {
        opts.log.info('stopping')
        await proxy.stop()
        opts.log.info('stopped')
      })()
      return stopped
    },
  }
}
