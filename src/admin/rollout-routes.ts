import { z } from 'zod'
import { onBreachSchema, stepSchema } from '../config/schema.js'
import type { RolloutDriver } from '../rollout/driver.js'
import type { RolloutCommand } from '../state/types.js'
import { gateKeys } from '../rollout/gates-schema.js'
import { parseBody } from './routes.js'
import type { AdminServer } from './server.js'
import type { StateView } from './state-view.js'

const startBody = z
  .strictObject({
    canary: z.string().min(1).optional(),
    baseline: z.string().min(1).optional(),
    steps: z.array(stepSchema).min(1, 'needs at least one step').optional(),
    onBreach: onBreachSchema.optional(),
    ...gateKeys,
  })
  .optional()

const COMMANDS: readonly RolloutCommand[] = ['pause', 'resume', 'promote', 'abort', 'approve']

/**
 * The rollout routes of the README's Admin API table. Each answers with the whole
 * state (as `/v1/state`); the machine's RolloutConflictError (409) and
 * RolloutInvalidError (400) become the error body in the admin server.
 */
export function rolloutRoutes(admin: AdminServer, driver: RolloutDriver, stateView: StateView): void {
  admin.route('POST', '/v1/rollout', async ({ body, actor }) => {
    const spec = parseBody(startBody, body) ?? {}
    await driver.begin(spec, { source: 'admin', actor })
    return { status: 201, body: stateView() }
  })
  for (const command of COMMANDS) {
    admin.route('POST', `/v1/rollout/${command}`, async ({ actor }) => {
      await driver.command(command, actor)
      return { status: 200, body: stateView() }
    })
  }
  admin.route('GET', '/v1/rollouts', async () => ({ status: 200, body: await driver.reports() }))
}
