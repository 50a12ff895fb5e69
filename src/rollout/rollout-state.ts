import type { RolloutState } from '../state/types.js'

export type {
  OnBreach,
  RolloutMirror,
  RolloutPhase,
  RolloutState,
  RolloutStatus,
  RolloutStep,
  StepReached,
} from '../state/types.js'

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
