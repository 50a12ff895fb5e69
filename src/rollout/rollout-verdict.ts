import type { SliceSnapshot } from '../analysis/slices.js'
import { figuresFromSlices } from '../analysis/slices.js'
import { type AnalysisLimits, judge, type Verdict } from '../analysis/verdict.js'
import type { RolloutState } from './rollout-state.js'

export interface RolloutVerdictInput {
  state: RolloutState
  /** The windows' slices, oldest first (`VersionWindow.exportSlices()`, the slice in progress included). */
  baseline: readonly SliceSnapshot[]
  canary: readonly SliceSnapshot[]
  /** Slice length of the windows (`analysis.intervalMs`). */
  sliceMs: number
  /** At least one canary instance is usable; undefined while none has had its first probe. */
  canaryUsable: boolean | undefined
  limits: AnalysisLimits
}

/**
 * The verdict on an active rollout. The sliding window is judged over three
 * scopes, so that figures from before the rollout or the step never decide
 * it unfairly and a breach is seen as soon as the statistics allow:
 *
 * - since the rollout started: what the canary did before (a previous,
 *   rolled back attempt still in the window) cannot roll back a fresh
 *   start, and every sample of this rollout counts, so a small but steady
 *   breach becomes significant across steps.
 * - since the current step started: a step moves on only when its own
 *   traffic, at its own weight, has `minRequests` per version and passes.
 *   The good figures of an earlier, smaller step never promote the next one.
 * - the newest slices holding `minRequests` per version: a canary that
 *   starts failing in the middle of a long step is not diluted by the
 *   minutes of good traffic before it; the breach is acted on at the first
 *   interval after `minRequests` failing-era requests.
 *
 * A breach in any scope is a breach: each is guarded by `minRequests` and
 * the z-test (the scopes overlap, so the false alarm rate rises only a
 * little above one test's, and a false alarm errs on the safe side). Else
 * the step scope's pass or wait decides. A scope starts at the slice holding
 * its start time: that slice may carry up to one interval of older traffic,
 * the price of judging the newest data at once. A canary none of whose
 * instances has had its first probe gives `wait` (at start nothing answered yet).
 */
export function rolloutVerdict(input: RolloutVerdictInput): Verdict {
  const { state, baseline, canary, sliceMs, canaryUsable, limits } = input
  if (canaryUsable === undefined) {
    return { outcome: 'wait', figure: null, reason: 'waiting for the first probe of the canary' }
  }
  const rolloutFrom = alignedStart(state.startedAt ?? 0, sliceMs)
  const stepFrom = Math.max(rolloutFrom, alignedStart(state.stepStartedAt ?? 0, sliceMs))
  const recentFrom = Math.max(stepFrom, newestWithEnough(baseline, canary, limits.minRequests))
  const judgeFrom = (fromMs: number) =>
    judge(figuresFromSlices(baseline, fromMs), figuresFromSlices(canary, fromMs), canaryUsable, limits)

  const step = judgeFrom(stepFrom)
  if (step.outcome === 'breach') return step
  if (recentFrom > stepFrom) {
    const recent = judgeFrom(recentFrom)
    if (recent.outcome === 'breach') return recent
  }
  if (stepFrom > rolloutFrom) {
    const whole = judgeFrom(rolloutFrom)
    if (whole.outcome === 'breach') return whole
  }
  return step
}

/**
 * Start of the newest run of slices in which both versions have at least
 * `minRequests`; -Infinity when the whole lists have fewer.
 */
export function newestWithEnough(
  baseline: readonly SliceSnapshot[],
  canary: readonly SliceSnapshot[],
  minRequests: number,
): number {
  let b = baseline.length - 1
  let c = canary.length - 1
  let bn = 0
  let cn = 0
  // Walk both lists newest first, a slice start at a time.
  while (b >= 0 || c >= 0) {
    const start = Math.max(b >= 0 ? baseline[b]!.startMs : -Infinity, c >= 0 ? canary[c]!.startMs : -Infinity)
    if (b >= 0 && baseline[b]!.startMs === start) bn += baseline[b--]!.requests
    if (c >= 0 && canary[c]!.startMs === start) cn += canary[c--]!.requests
    if (bn >= minRequests && cn >= minRequests) return start
  }
  return Number.NEGATIVE_INFINITY
}

function alignedStart(t: number, sliceMs: number): number {
  return Math.floor(t / sliceMs) * sliceMs
}
