import type { Logger } from 'pino'
import type { AdminServer } from '../admin/server.js'
import type { Config } from '../config/load.js'
import type { RolloutDriver } from '../rollout/driver.js'
import type { StateStore } from '../state/store.js'
import { assemble } from './assemble.js'
import type { Sluice } from './sluice.js'

export interface Running {
  readonly sluice: Sluice
  readonly admin: AdminServer
  /** Runs rollouts; it reads the mirror's figures itself during a rollout's mirror phase. */
  readonly rollout: RolloutDriver
  readonly port: number
  readonly adminPort: number
  /** Graceful stop; a second call waits on the same stop. */
  stop(): Promise<void>
}

export interface RunOptions {
  log: Logger
  store?: StateStore
}

/** Starts a proxy and its admin listener from a validated config: what `sluice serve` runs. Assembled in ./assemble.ts. */
export async function runSluice(config: Config, opts: RunOptions): Promise<Running> {
  const proxy = assemble(config, opts)
  const { port, adminPort } = await proxy.start()
  opts.log.info({ port, adminPort, versions: config.versions.map((v) => v.name) }, 'listening')
  let stopped: Promise<void> | undefined
  return {
    sluice: proxy.sluice,
    admin: proxy.admin,
    rollout: proxy.rollout,
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
