import type { Logger } from 'pino'
import { TokenCheck } from '../admin/auth.js'
import { mirrorRoutes } from '../admin/mirror-routes.js'
import { rolloutRoutes } from '../admin/rollout-routes.js'
import { instancesRoutes } from '../admin/instances-routes.js'
import { coreRoutes } from '../admin/routes.js'
import { AdminServer } from '../admin/server.js'
import type { Config } from '../config/load.js'
import { Discovery } from '../discovery/discovery.js'
import { RolloutDriver } from '../rollout/driver.js'
import type { StateStore } from '../state/store.js'
import { createStore } from '../state/store-factory.js'
import { attachWebSockets } from '../websocket/gateway.js'
import { SharedAnalysis } from './shared-analysis.js'
import { Sluice } from './sluice.js'

export interface Running {
  readonly sluice: Sluice
  readonly admin: AdminServer
  /** Runs rollouts; the mirroring data path feeds it `feedMirrorFigures`. */
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

/** Starts a proxy and its admin listener from a validated config: what `sluice serve` runs. */
export async function runSluice(config: Config, opts: RunOptions): Promise<Running> {
  const sluice = new Sluice(config, { log: opts.log, store: opts.store ?? createStore(config, opts.log) })
  attachWebSockets(sluice)
  const tokens = new TokenCheck(config.admin.tokens)
  if (tokens.open) opts.log.warn('admin API has no token: /v1/* is open to anyone who can reach the admin listener')
  const admin = new AdminServer(tokens, opts.log)
  coreRoutes(admin, sluice)
  instancesRoutes(admin, sluice)
  // With a shared store the verdict is computed on every proxy's traffic.
  const shared = sluice.store.kind === 'redis' ? new SharedAnalysis(sluice) : undefined
  const rollout = new RolloutDriver(sluice, shared ? { slices: (v) => shared.slices(v) } : {})
  rolloutRoutes(admin, sluice, rollout)
  mirrorRoutes(admin, sluice)
  let port: number
  let adminPort: number
  // Stopped by the proxy's stop hook, before the listeners close.
  const discovery = new Discovery(sluice)
  try {
    discovery.start()
    ;({ port } = await sluice.start())
    adminPort = await admin.listen(config.admin.host, config.admin.port)
    shared?.start()
    await rollout.start()
  } catch (err) {
    discovery.stop()
    await sluice.stop()
    await admin.close()
    throw err
  }
  opts.log.info({ port, adminPort, versions: config.versions.map((v) => v.name) }, 'listening')
  let stopped: Promise<void> | undefined
  return {
    sluice,
    admin,
    rollout,
    port,
    adminPort,
    stop() {
      stopped ??= (async () => {
        opts.log.info('stopping')
        await sluice.stop()
        await admin.close()
        opts.log.info('stopped')
      })()
      return stopped
    },
  }
}
