import { z } from 'zod'
import { httpUrl } from '../config/schema.js'
import type { Sluice } from '../lifecycle/sluice.js'
import { parseBody } from './routes.js'
import type { AdminServer } from './server.js'
import type { StateView } from './state-view.js'

const addBody = z.strictObject({ version: z.string().min(1), url: httpUrl })
const removeBody = z.strictObject({ url: httpUrl })

/** Instances added and removed at runtime (README "Runtime instances"). */
export function instancesRoutes(admin: AdminServer, s: Sluice, stateView: StateView): void {
  admin
    .route('POST', '/v1/instances', async ({ body, actor }) => {
      const { version, url } = parseBody(addBody, body)
      await s.addInstance(version, url, { source: 'admin', actor })
      return { status: 201, body: stateView() }
    })
    .route('DELETE', '/v1/instances', async ({ body, actor }) => {
      const { url } = parseBody(removeBody, body)
      await s.removeInstance(url, { source: 'admin', actor })
      // Accepted: the instance drains and leaves /v1/state once idle.
      return { status: 202, body: stateView() }
    })
}
