import { z } from 'zod'
import { zodProblems } from '../config/load.js'
import { weightsSchema } from '../config/schema.js'
import { AdminError } from '../errors.js'
import type { Sluice } from '../lifecycle/sluice.js'
import type { AdminServer } from './server.js'
import type { StateView } from './state-view.js'
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from './status-page.js'

const drainBody = z.union([z.strictObject({ version: z.string().min(1) }), z.strictObject({ url: z.string().min(1) })])

/** Validates an admin body with zod; the first problem becomes the 400's path. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body)
  if (r.success) return r.data
  const problems = zodProblems(r.error)
  const first = problems[0]
  throw new AdminError(
    400,
    'SLUICE_INVALID_BODY',
    problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('; '),
    first?.path || undefined,
  )
}

/** The core routes of the README's Admin API table (rollout and mirror routes register themselves). */
export function coreRoutes(admin: AdminServer, s: Sluice, stateView: StateView): void {
  admin
    .route('GET', '/', () => ({
      status: 200,
      body: STATUS_PAGE_HTML,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': STATUS_PAGE_CSP,
      },
    }))
    .route('GET', '/healthz', () => ({ status: 200, body: { status: 'ok' } }))
    .route('GET', '/readyz', () =>
      s.ready ? { status: 200, body: { status: 'ready' } } : { status: 503, body: { status: s.status } },
    )
    .route('GET', '/metrics', async () => ({
      status: 200,
      body: await s.metrics.text(),
      headers: { 'content-type': s.metrics.registry.contentType },
    }))
    .route('GET', '/v1/state', () => ({ status: 200, body: stateView() }))
    .route('PUT', '/v1/weights', async ({ body, actor }) => {
      const weights = parseBody(weightsSchema, body)
      await s.setWeights(weights, { source: 'admin', actor })
      return { status: 200, body: stateView() }
    })
    .route('POST', '/v1/drain', async ({ body, actor }) => {
      await s.drain(parseBody(drainBody, body), true, { source: 'admin', actor })
      return { status: 200, body: stateView() }
    })
    .route('POST', '/v1/undrain', async ({ body, actor }) => {
      await s.drain(parseBody(drainBody, body), false, { source: 'admin', actor })
      return { status: 200, body: stateView() }
    })
    .route('POST', '/v1/reload', async ({ actor }) => {
      await s.reload({ source: 'reload', actor })
      return { status: 200, body: stateView() }
    })
    .route('GET', '/v1/audit', async () => ({ status: 200, body: await s.store.audit(1000) }))
}
