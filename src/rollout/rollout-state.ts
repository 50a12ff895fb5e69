/**
 * The rollout's state as plain JSON data: it is stored (memory, Redis) and
 * another proxy resumes from it with nothing but its own clock. Times are
 * epoch milliseconds.
 *
 * It is a superset of the `/v1/state` `rollout` object
 * (`status`, `baseline`, `canary`, `step`, `reason`) and can be served as is.
 *
 * `step` is the 0-based index of the current weighted step. It is -1 when
 * no weighted step has been reached: idle, or during the optional mirror
 * phase, which `phase: 'mirror'` names (the canary then has weight 0 and
 * receives copies of the baseline's requests).
 */

import type { DeployWindow } from './deploy-window.js'
import type { Gate, NotifyTarget } from './gates-schema.js'

export type RolloutStatus = 'idle' | 'progressing' | 'paused' | 'promoted' | 'rolled_back'
export type RolloutPhase = 'mirror' | 'steps'
export type OnBreach = 'rollback' | 'pause'

export interface RolloutStep {
  /** Canary weight, integer percent. The last step is 100: reaching it promotes. */
  weight: number
  /** How long the step must hold with no breach before the next one. Ignored on the last step. */
  holdMs: number
  /** After its hold the step waits for `POST /v1/rollout/approve`. */
  approval?: boolean
}

/** `rollout.mirror` of the config: a shadow phase before the first weighted step. */
export interface RolloutMirror {
  percent: number
  holdMs: number
  maxMismatchRate: number
  maxP95Ratio: number
  minRequests: number
}

export interface StepReached {
  /** -1 for the mirror phase. */
  step: number
  weight: number
  at: number
}

export interface RolloutState {
  status: RolloutStatus
  /** Names the rollout in reports; null when idle. */
  id: string | null
  baseline: string | null
  canary: string | null
  step: number
  /** null when idle. */
  phase: RolloutPhase | null
  /** Why it paused, rolled back or was promoted; null while progressing. */
  reason: string | null
  steps: RolloutStep[]
  onBreach: OnBreach
  mirror: RolloutMirror | null
  /** Who started it (the admin token's name), null for the config's autoStart. */
  actor: string | null
  startedAt: number | null
  endedAt: number | null
  /** When the current step (or the mirror phase) began. */
  stepStartedAt: number | null
  /** When the current hold began: the step's start, or the last resume. */
  holdStartedAt: number | null
  /** Every step reached, in order, with its time. */
  reached: StepReached[]
  /** Bumped on every change, so stores can keep the newest. */
  revision: number
  /** What the current step waits for once its hold passed: `approval`, `gate:NAME`, `window`, or null. */
  awaiting?: string | null
  /** The step an operator approved (index), null when none. */
  approvedStep?: number | null
  /** When the gates began failing on this step (the first failing check after the hold), null while none fails. */
  gateFailingSince?: number | null
  /** Checks before a step advances, their timeout, the deploy windows and the notification targets. */
  gates?: Gate[]
  gateTimeoutMs?: number | null
  windows?: DeployWindow[]
  notify?: NotifyTarget[]
}

export function idleRollout(): RolloutState {
  return {
    status: 'idle',
    id: null,
    baseline: null,
    canary: null,
    step: -1,
    phase: null,
    reason: null,
    steps: [],
    onBreach: 'rollback',
    mirror: null,
    actor: null,
    startedAt: null,
    endedAt: null,
    stepStartedAt: null,
    holdStartedAt: null,
    reached: [],
    revision: 0,
    awaiting: null,
    approvedStep: null,
    gateFailingSince: null,
    gates: [],
    gateTimeoutMs: null,
    windows: [],
    notify: [],
  }
}

/** A rollout that can still move: progressing or paused. */
export function isActive(state: RolloutState): boolean {
  return state.status === 'progressing' || state.status === 'paused'
}

/**
 * The weights a rollout state wants, for a proxy that resumes a stored
 * rollout and must apply them. A rollout owns the whole split: every version
 * other than baseline and canary gets 0. null when idle.
 */
export function rolloutWeights(state: RolloutState): Record<string, number> | null {
  const { baseline, canary } = state
  if (baseline === null || canary === null) return null
  let canaryWeight: number
  if (state.status === 'promoted') canaryWeight = 100
  else if (state.status === 'rolled_back' || state.phase === 'mirror') canaryWeight = 0
  else canaryWeight = state.steps[state.step]?.weight ?? 0
  return { [baseline]: 100 - canaryWeight, [canary]: canaryWeight }
}

/** The mirroring a rollout state wants: during its mirror phase only. */
export function rolloutMirroring(state: RolloutState): { version: string; percent: number } | null {
  if (!isActive(state) || state.phase !== 'mirror' || state.mirror === null || state.canary === null) return null
  return { version: state.canary, percent: state.mirror.percent }
}
