import { mirrorSchema } from '../config/schema.js'
import { AdminError } from '../errors.js'
import type { Mirror } from '../mirror/mirror.js'
import { parseBody } from './routes.js'
import type { AdminServer } from './server.js'
import type { StateView } from './state-view.js'

const mirrorBody = mirrorSchema.nullable()

/**
 * The mirror routes: `PUT /v1/mirror` (README, Admin API) with the `mirror`
 * config section as body, or `null` to stop; `GET /v1/mirror` (the settings
 * and figures, as `mirror` in the state); `GET /v1/mirror/mismatches` (the
 * last differing or failed shadow answers, newest last).
 */
export function mirrorRoutes(admin: AdminServer, mirror: Mirror, stateView: StateView): void {
  admin
    .route('PUT', '/v1/mirror', async ({ body, actor }) => {
      if (body === undefined) {
        throw new AdminError(400, 'SLUICE_INVALID_BODY', 'body required: the mirror section, or null to stop')
      }
      const section = parseBody(mirrorBody, body)
      await mirror.set(section, { source: 'admin', actor })
      return { status: 200, body: stateView() }
    })
    .route('GET', '/v1/mirror', () => ({ status: 200, body: mirror.view() }))
    .route('GET', '/v1/mirror/mismatches', () => ({ status: 200, body: { mismatches: mirror.mismatches() } }))
}
