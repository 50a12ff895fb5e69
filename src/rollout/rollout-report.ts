import { type RolloutFigures, summarize, type TotalsSummary } from './rollout-figures.js'
import type { OnBreach, RolloutState, RolloutStatus } from './rollout-state.js'

/** One entry of `GET /v1/rollouts`. Times are ISO 8601 strings. */
export interface RolloutReport {
  id: string
  baseline: string
  canary: string
  actor: string | null
  onBreach: OnBreach
  startedAt: string
  /** null while the rollout is still active. */
  endedAt: string | null
  /** The rollout's status: `promoted` or `rolled_back` once it ended. */
  outcome: RolloutStatus
  reason: string | null
  /** Steps reached in order; step -1 is the mirror phase. */
  steps: { step: number; weight: number; at: string }[]
  figures: { baseline: TotalsSummary; canary: TotalsSummary }
}

/** The report of a started rollout (null for the idle state) with its figures over the rollout. */
export function buildReport(state: RolloutState, figures: RolloutFigures): RolloutReport | null {
  if (state.id === null || state.baseline === null || state.canary === null || state.startedAt === null) return null
  return {
    id: state.id,
    baseline: state.baseline,
    canary: state.canary,
    actor: state.actor,
    onBreach: state.onBreach,
    startedAt: new Date(state.startedAt).toISOString(),
    endedAt: state.endedAt === null ? null : new Date(state.endedAt).toISOString(),
    outcome: state.status,
    reason: state.reason,
    steps: state.reached.map((r) => ({ step: r.step, weight: r.weight, at: new Date(r.at).toISOString() })),
    figures: { baseline: summarize(figures.baseline), canary: summarize(figures.canary) },
  }
}
