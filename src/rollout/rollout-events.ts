import type { NotifyEvent } from './gates-schema.js'
import type { RolloutState } from './rollout-state.js'

/**
 * The notification events between two states of the rollout as one proxy
 * saw them, in the order they happened. The states need not be adjacent:
 * a driver that learns of an operator's change through the shared store
 * sees only its result, so each event is read from a difference.
 *
 * `started` covers the first step; `step` fires on every later weight
 * change except the final one, which is `promoted`.
 */
export function notifyEvents(before: RolloutState, after: RolloutState): NotifyEvent[] {
  if (after.id === null || after.revision === before.revision) return []
  const out: NotifyEvent[] = []
  const sameRollout = before.id === after.id
  if (!sameRollout) out.push('started')
  const stepBefore = sameRollout ? before.step : after.phase === 'mirror' ? -1 : 0
  if (after.status !== 'promoted' && after.step >= 0 && after.step !== stepBefore) out.push('step')
  const awaited = sameRollout ? (before.awaiting ?? null) : null
  if (after.awaiting && after.awaiting !== awaited) out.push('awaiting')
  if (after.status !== (sameRollout ? before.status : 'progressing')) {
    if (after.status === 'paused' || after.status === 'promoted' || after.status === 'rolled_back') {
      out.push(after.status)
    }
  }
  return out
}
