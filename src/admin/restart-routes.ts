import { AdminError } from '../errors.js'
import type { ChangeMeta } from '../state/control.js'
import type { AdminServer } from './server.js'
import type { StateView } from './state-view.js'

/** What the restart route needs: the primary's worker pool. */
export interface Restarter {
  restart(meta: ChangeMeta): Promise<void>
}

/**
 * POST /v1/restart (README "Workers and self-upgrade"): 202 once the config
 * on disk is applied and the workers' replacement has begun; 400 with the
 * problems when that config is invalid; 409 while a restart runs. One
 * process without workers has no primary to hand over to: 409 saying so.
 */
export function restartRoutes(admin: AdminServer, pool: Restarter | undefined, stateView: StateView): void {
  admin.route('POST', '/v1/restart', async ({ actor }) => {
    if (pool === undefined) {
      throw new AdminError(
        409,
        'SLUICE_NO_WORKERS',
        'self-upgrade needs workers: set `workers` (1 or more, or "auto") in the config or `serve --workers`',
      )
    }
    await pool.restart({ source: 'admin', actor })
    return { status: 202, body: stateView() }
  })
}
