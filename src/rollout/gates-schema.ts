import { z } from 'zod'
import { type Gate, NOTIFY_EVENTS, type NotifyTarget, type Same } from '../state/types.js'
import { type DeployWindow, HH_MM, knownTimeZone, WEEKDAYS } from './deploy-window.js'

export { NOTIFY_EVENTS } from '../state/types.js'
export type { Gate, NotifyEvent, NotifyTarget } from '../state/types.js'

/**
 * The `rollout` keys that hold a step back or report on it: `gates`,
 * `gateTimeoutMs`, `windows`, `notify` (README "Rollout gates, windows and
 * notifications"). Shared by the config file and the `POST /v1/rollout` body.
 */

const anyHttpUrl = z
  .string()
  .refine((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), 'must be an http:// or https:// URL')

const timeoutMs = z.number().int().min(1).max(60_000).default(5000)
const headers = z.record(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be a header name'), z.string())

export const gateSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, "_", "." or "-"'),
    webhook: z.strictObject({ url: anyHttpUrl, timeoutMs, headers: headers.default({}) }).optional(),
    prometheus: z
      .strictObject({
        url: anyHttpUrl,
        query: z.string().min(1),
        min: z.number().optional(),
        max: z.number().optional(),
        timeoutMs,
        headers: headers.default({}),
      })
      .refine((p) => p.min !== undefined || p.max !== undefined, 'needs min and/or max')
      .refine((p) => p.min === undefined || p.max === undefined || p.min <= p.max, 'min must not exceed max')
      .optional(),
  })
  .refine((g) => (g.webhook === undefined) !== (g.prometheus === undefined), 'needs exactly one of webhook, prometheus')

export const gatesSchema = z.array(gateSchema).superRefine((gates, ctx) => {
  const seen = new Set<string>()
  gates.forEach((g, i) => {
    if (seen.has(g.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate gate "${g.name}"` })
    seen.add(g.name)
  })
})

export const windowSchema = z.strictObject({
  days: z.array(z.enum(WEEKDAYS)).min(1).optional(),
  from: z.string().regex(HH_MM, 'must be HH:MM (00:00..23:59)'),
  to: z.string().regex(HH_MM, 'must be HH:MM (00:00..23:59)'),
  timeZone: z.string().refine(knownTimeZone, 'must be an IANA time zone this runtime knows').default('UTC'),
})

export const notifySchema = z.strictObject({
  url: anyHttpUrl,
  events: z.array(z.enum(NOTIFY_EVENTS)).min(1).default([...NOTIFY_EVENTS]),
  /** `json`: the event as documented; `slack`: `{"text": ...}` for a Slack incoming webhook. */
  format: z.enum(['json', 'slack']).default('json'),
  headers: headers.default({}),
})

/** The four keys, as both the config's `rollout` and the start body take them. */
export const gateKeys = {
  gates: gatesSchema.optional(),
  gateTimeoutMs: z.number().int().min(1).optional(),
  windows: z.array(windowSchema).optional(),
  notify: z.array(notifySchema).optional(),
}

// Compile-time guards: what these schemas read back is exactly the shared state's types.
const gateMatches: Same<z.output<typeof gateSchema>, Gate> = true
const notifyMatches: Same<z.output<typeof notifySchema>, NotifyTarget> = true
const windowMatches: Same<z.output<typeof windowSchema>, DeployWindow & { timeZone: string }> = true
void [gateMatches, notifyMatches, windowMatches]
