import { z } from 'zod'
import { mirrorSchema, onBreachSchema, rolloutMirrorSchema, stepSchema } from '../config/schema.js'
import { gateSchema, notifySchema, windowSchema } from '../rollout/gates-schema.js'
import { CHANGE_SOURCES, type AuditEntry, type DesiredState, type RolloutState } from './types.js'

/**
 * The desired state as it arrives from outside this process (another
 * proxy through Redis, the state file), read with the schemas the config
 * and the admin API already use. A state that fails is never applied.
 */

const epochMs = z.number()

export const rolloutStateSchema = z.object({
  status: z.enum(['idle', 'progressing', 'paused', 'promoted', 'rolled_back']),
  id: z.string().nullable(),
  baseline: z.string().nullable(),
  canary: z.string().nullable(),
  step: z.number().int().min(-1),
  phase: z.enum(['mirror', 'steps']).nullable(),
  reason: z.string().nullable(),
  steps: z.array(stepSchema),
  onBreach: onBreachSchema,
  mirror: rolloutMirrorSchema.nullable(),
  actor: z.string().nullable(),
  startedAt: epochMs.nullable(),
  endedAt: epochMs.nullable(),
  stepStartedAt: epochMs.nullable(),
  holdStartedAt: epochMs.nullable(),
  reached: z.array(z.object({ step: z.number().int(), weight: z.number(), at: epochMs })),
  revision: z.number().int().min(0),
  awaiting: z.string().nullable().optional(),
  approvedStep: z.number().int().nullable().optional(),
  gateFailingSince: epochMs.nullable().optional(),
  gates: z.array(gateSchema).optional(),
  gateTimeoutMs: z.number().int().nullable().optional(),
  windows: z.array(windowSchema).optional(),
  notify: z.array(notifySchema).optional(),
})

const desiredShape = {
  revision: z.number().int().min(1),
  weights: z.record(z.string(), z.number().int().min(0).max(100)),
  drained: z.strictObject({ versions: z.array(z.string()), instances: z.array(z.string()) }),
  // Written before runtime instances existed: none.
  instances: z.array(z.strictObject({ version: z.string(), url: z.string() })).default([]),
  rollout: rolloutStateSchema.nullable(),
  mirror: mirrorSchema.nullable(),
  configGeneration: z.number().int().min(0),
}

/**
 * Another proxy's state (Redis). Keys this release does not know are left
 * out rather than refused: during a rolling upgrade the proxies differ by a
 * release.
 */
export const sharedStateSchema = z.object(desiredShape)

/**
 * The state file's state. Strict: a key this release does not know is a
 * file from a newer sluice, refused rather than half-read. A key added to
 * DesiredState later goes here too, with a default so that older files
 * still load.
 */
export const fileStateSchema = z.strictObject(desiredShape)

export const auditEntrySchema = z.strictObject({
  at: z.string(),
  action: z.string(),
  source: z.enum(CHANGE_SOURCES),
  actor: z.string().nullable(),
  before: z.unknown(),
  after: z.unknown(),
  reason: z.string().nullable(),
  revision: z.number().int(),
})

// Compile-time guards: what the schemas read back is usable as the typed state.
type Fits<A, B> = [A] extends [B] ? true : false
const rolloutFits: Fits<z.output<typeof rolloutStateSchema>, RolloutState> = true
const stateFits: Fits<z.output<typeof sharedStateSchema>, DesiredState> = true
const auditFits: Fits<z.output<typeof auditEntrySchema>, AuditEntry> = true
void [rolloutFits, stateFits, auditFits]

/** The first problem of a failed parse, as `path: message`. */
export function firstProblem(error: z.ZodError): string {
  const issue = error.issues[0]
  if (issue === undefined) return 'invalid'
  const at = issue.path.length > 0 ? issue.path.join('.') : '(top level)'
  return `${at}: ${issue.message}`
}
