import type { Verdict } from '../analysis/verdict.js'
import { stepProblems } from '../config/schema.js'
import { RolloutConflictError, RolloutInvalidError } from '../errors.js'
import type { AuditSource } from '../state/types.js'
import { type DeployWindow, inAnyWindow } from './deploy-window.js'
import type { Gate, NotifyTarget } from './gates-schema.js'
import {
  isActive,
  type OnBreach,
  type RolloutMirror,
  type RolloutState,
  type RolloutStep,
  rolloutMirroring,
  rolloutWeights,
} from './rollout-state.js'

/** Shadow traffic figures of the mirror phase, counted since the phase began (a shadow error counts as a mismatch). */
export interface MirrorFigures {
  copied: number
  mismatches: number
  /** null when unknown (no shadow answer yet). */
  shadowP95Ms: number | null
  primaryP95Ms: number | null
}

export type RolloutEvent =
  | {
      type: 'start'
      baseline: string
      canary: string
      steps: readonly RolloutStep[]
      onBreach?: OnBreach
      mirror?: RolloutMirror | null
      actor?: string | null
      /** Defaults to `${canary}-${now}`. */
      id?: string
      /** Declared version names; when given, baseline and canary must be among them. */
      versions?: readonly string[]
      /** Audit source, `admin` unless told (`rollout` for the config's autoStart). */
      source?: AuditSource
      gates?: readonly Gate[]
      gateTimeoutMs?: number | null
      windows?: readonly DeployWindow[]
      notify?: readonly NotifyTarget[]
    }
  | { type: 'pause' | 'resume' | 'promote' | 'abort' | 'approve'; actor?: string | null }
  /**
   * The analysis verdict of this interval (send every `analysis.intervalMs`),
   * with the gates' checks when `gatesDue` said they were due.
   */
  | { type: 'verdict'; verdict: Verdict; gates?: readonly GateCheck[] }
  /** The mirror figures of this interval, during the mirror phase. */
  | {
      type: 'mirror'
      figures: MirrorFigures
      /** analysis.maxP95IncreaseMs: as for the steps, a latency breach needs the ratio and this difference. */
      maxP95IncreaseMs: number
    }

/** One gate check's outcome: `error` when the check itself failed (unreachable, timeout, bad answer). */
export interface GateCheck {
  gate: string
  result: 'pass' | 'fail' | 'error'
  /** Names the gate and what it saw, e.g. `gate conversion: 0.91 below min 0.95`. */
  reason: string
}


export type RolloutAction =
  | 'rollout.start'
  | 'rollout.step'
  | 'rollout.promote'
  | 'rollout.pause'
  | 'rollout.resume'
  | 'rollout.rollback'
  | 'rollout.abort'
  | 'rollout.approve'
  | 'rollout.await'

export interface RolloutAudit {
  action: RolloutAction
  source: AuditSource
  actor: string | null
  reason: string
}

export interface RolloutTransition {
  state: RolloutState
  /** false when the event changed nothing; `state` is then the same object. */
  changed: boolean
  /** Weights to apply through the one weights path, when they change. Versions not named get 0. */
  weights?: Record<string, number>
  /** Mirroring to start (`{version, percent}`) or stop (`null`), when it changes. */
  mirror?: { version: string; percent: number } | null
  audit?: RolloutAudit
  /** The rollout reached promoted or rolled_back with this event: time to archive its report. */
  ended?: boolean
}

/**
 * The rollout state machine: a pure function of (state, event, now).
 *
 *   idle | promoted | rolled_back --start--> progressing (mirror phase or step 0)
 *   progressing --verdict pass, hold passed--> next step | promoted (at the last step, weight 100)
 *   progressing | paused --breach, onBreach rollback--> rolled_back (canary 0, at once)
 *   progressing --breach, onBreach pause--> paused (weights frozen)
 *   mirror phase --over limits--> rolled_back;  --held within limits--> step 0
 *   progressing --pause--> paused --resume--> progressing (the hold starts again)
 *   progressing | paused --promote--> promoted;  --abort--> rolled_back
 *
 * It never moves traffic: it returns the weights it wants and the caller
 * applies them through the same path as an operator's change. A step
 * advances only on a `pass` verdict (enough samples in both windows) once
 * its hold has passed; a `wait` verdict holds it where it is. An operator's
 * pause freezes the steps, not the safety net: with `onBreach: rollback` a
 * breach still rolls a paused rollout back.
 *
 * Operator commands with nothing to act on throw RolloutConflictError (409);
 * a start with an invalid spec throws RolloutInvalidError (400). Periodic
 * events (verdict, mirror) never throw: when they do not apply they change
 * nothing.
 */
export function transition(state: RolloutState, event: RolloutEvent, now: number): RolloutTransition {
  switch (event.type) {
    case 'start':
      return start(state, event, now)
    case 'pause':
      return pause(state, event.actor ?? null)
    case 'resume':
      return resume(state, event.actor ?? null, now)
    case 'promote':
      return promote(state, event.actor ?? null, now)
    case 'abort':
      return abort(state, event.actor ?? null, now)
    case 'approve':
      return approve(state, event.actor ?? null)
    case 'verdict':
      return onVerdict(state, event.verdict, now, event.gates)
    case 'mirror':
      return onMirror(state, event.figures, event.maxP95IncreaseMs, now)
  }
}

type StartEvent = Extract<RolloutEvent, { type: 'start' }>

function start(state: RolloutState, e: StartEvent, now: number): RolloutTransition {
  if (isActive(state)) {
    throw new RolloutConflictError(`a rollout of "${state.canary}" is already ${state.status}`)
  }
  validateStart(e)
  const steps = e.steps.map((s) => (s.approval ? { weight: s.weight, holdMs: s.holdMs, approval: true } : { weight: s.weight, holdMs: s.holdMs }))
  const mirror = e.mirror ? { ...e.mirror } : null
  const onBreach = e.onBreach ?? 'rollback'
  const actor = e.actor ?? null
  const base: RolloutState = {
    status: 'progressing',
    id: e.id ?? `${e.canary}-${now}`,
    baseline: e.baseline,
    canary: e.canary,
    step: -1,
    phase: mirror ? 'mirror' : 'steps',
    reason: null,
    steps,
    onBreach,
    mirror,
    actor,
    startedAt: now,
    endedAt: null,
    stepStartedAt: now,
    holdStartedAt: now,
    reached: mirror ? [{ step: -1, weight: 0, at: now }] : [],
    revision: state.revision + 1,
    awaiting: null,
    approvedStep: null,
    gateFailingSince: null,
    gates: (e.gates ?? []).map((g) => structuredClone(g)),
    gateTimeoutMs: e.gateTimeoutMs ?? null,
    windows: (e.windows ?? []).map((w) => structuredClone(w)),
    notify: (e.notify ?? []).map((n) => structuredClone(n)),
  }
  const plan = `${e.canary} against ${e.baseline} in steps ${steps.map((s) => s.weight).join(', ')}`
  const first = mirror ? `, after a ${mirror.percent}% mirror phase of ${mirror.holdMs} ms` : ''
  const reason = `started by ${actor ?? 'the config'}: ${plan}${first}; on breach ${onBreach}`
  const audit: RolloutAudit = { action: 'rollout.start', source: e.source ?? 'admin', actor, reason }
  if (mirror) {
    return {
      state: base,
      changed: true,
      weights: rolloutWeights(base)!,
      mirror: rolloutMirroring(base),
      audit,
    }
  }
  const out = enterStep({ ...base, revision: state.revision }, 0, now, false)
  if (out.state.status === 'promoted') out.state.reason = `promoted at start: the only step is ${steps[0]!.weight}`
  return { ...out, audit }
}

function validateStart(e: StartEvent): void {
  if (e.versions) {
    if (!e.versions.includes(e.baseline)) throw new RolloutInvalidError(`unknown version "${e.baseline}"`, 'baseline')
    if (!e.versions.includes(e.canary)) throw new RolloutInvalidError(`unknown version "${e.canary}"`, 'canary')
  }
  if (e.baseline === e.canary) throw new RolloutInvalidError('canary must differ from baseline', 'canary')
  if (e.steps.length === 0) throw new RolloutInvalidError('needs at least one step', 'steps')
  const bad = e.steps.findIndex(
    (s) => !Number.isInteger(s.weight) || s.weight < 0 || s.weight > 100 || !(s.holdMs >= 0),
  )
  if (bad >= 0) throw new RolloutInvalidError('weight must be an integer 0..100 and holdMs >= 0', `steps.${bad}`)
  const problem = stepProblems(e.steps)[0]
  if (problem) throw new RolloutInvalidError(problem.message, ['steps', ...problem.path].join('.'))
}

/**
 * Moves to step `index`; a step of weight 100 promotes. `leavingMirror`
 * stops the rollout's mirroring. The caller adds the audit entry.
 */
function enterStep(state: RolloutState, index: number, now: number, leavingMirror: boolean): RolloutTransition {
  const weight = state.steps[index]!.weight
  const reached = [...state.reached, { step: index, weight, at: now }]
  const fresh = { awaiting: null, gateFailingSince: null }
  const next: RolloutState =
    weight >= 100
      ? { ...state, ...fresh, status: 'promoted', step: index, phase: 'steps', endedAt: now, reached }
      : { ...state, ...fresh, step: index, phase: 'steps', stepStartedAt: now, holdStartedAt: now, reached }
  next.revision = state.revision + 1
  const out: RolloutTransition = { state: next, changed: true, weights: rolloutWeights(next)! }
  if (leavingMirror) out.mirror = null
  if (next.status === 'promoted') out.ended = true
  return out
}

/** Ends the rollout with canary 0, baseline 100. */
function rollBack(
  state: RolloutState,
  now: number,
  reason: string,
  action: RolloutAction,
  source: AuditSource,
  actor: string | null,
): RolloutTransition {
  const next: RolloutState = {
    ...state,
    status: 'rolled_back',
    reason,
    endedAt: now,
    awaiting: null,
    revision: state.revision + 1,
  }
  const out: RolloutTransition = {
    state: next,
    changed: true,
    weights: rolloutWeights(next)!,
    audit: { action, source, actor, reason },
    ended: true,
  }
  if (state.phase === 'mirror') out.mirror = null
  return out
}

/** Where a rollout stands, for reasons in the audit. */
export function where(state: RolloutState): string {
  return state.phase === 'mirror' ? 'in the mirror phase' : `at ${stepName(state, state.step)} (weight ${weightOf(state)})`
}

/** Steps are counted from 1 for people ("step 2 of 3"); the state keeps the index. */
function stepName(state: RolloutState, index: number): string {
  return `step ${index + 1} of ${state.steps.length}`
}

function weightOf(state: RolloutState): number {
  return state.steps[state.step]?.weight ?? 0
}

function conflict(action: string, state: RolloutState, wanted: string): RolloutConflictError {
  const what = state.status === 'idle' ? 'no rollout' : `the rollout of "${state.canary}" is ${state.status}`
  return new RolloutConflictError(`nothing to ${action}: ${what}, not ${wanted}`)
}

function pause(state: RolloutState, actor: string | null): RolloutTransition {
  if (state.status !== 'progressing') throw conflict('pause', state, 'progressing')
  const reason = `paused by ${actor ?? 'an operator'} ${where(state)}`
  return {
    state: { ...state, status: 'paused', reason, revision: state.revision + 1 },
    changed: true,
    audit: { action: 'rollout.pause', source: 'admin', actor, reason },
  }
}

function resume(state: RolloutState, actor: string | null, now: number): RolloutTransition {
  if (state.status !== 'paused') throw conflict('resume', state, 'paused')
  const hold = state.phase === 'mirror' ? state.mirror!.holdMs : state.steps[state.step]!.holdMs
  const reason = `resumed by ${actor ?? 'an operator'} ${where(state)}; the hold of ${hold} ms starts again`
  return {
    state: {
      ...state,
      status: 'progressing',
      reason: null,
      holdStartedAt: now,
      awaiting: null,
      gateFailingSince: null,
      revision: state.revision + 1,
    },
    changed: true,
    audit: { action: 'rollout.resume', source: 'admin', actor, reason },
  }
}

function promote(state: RolloutState, actor: string | null, now: number): RolloutTransition {
  if (!isActive(state)) throw conflict('promote', state, 'progressing or paused')
  const reason = `promoted by ${actor ?? 'an operator'} ${where(state)}`
  const last = state.steps.length - 1
  const next: RolloutState = {
    ...state,
    status: 'promoted',
    step: last,
    phase: 'steps',
    reason,
    endedAt: now,
    awaiting: null,
    reached: [...state.reached, { step: last, weight: 100, at: now }],
    revision: state.revision + 1,
  }
  const out: RolloutTransition = {
    state: next,
    changed: true,
    weights: rolloutWeights(next)!,
    audit: { action: 'rollout.promote', source: 'admin', actor, reason },
    ended: true,
  }
  if (state.phase === 'mirror') out.mirror = null
  return out
}

function abort(state: RolloutState, actor: string | null, now: number): RolloutTransition {
  if (!isActive(state)) throw conflict('abort', state, 'progressing or paused')
  const reason = `aborted by ${actor ?? 'an operator'} ${where(state)}`
  return rollBack(state, now, reason, 'rollout.abort', 'admin', actor)
}

function approve(state: RolloutState, actor: string | null): RolloutTransition {
  if (!isActive(state) || state.awaiting !== 'approval') {
    const what = !isActive(state)
      ? state.status === 'idle'
        ? 'no rollout'
        : `the rollout of "${state.canary}" is ${state.status}`
      : `the rollout of "${state.canary}" ${state.awaiting ? `awaits ${state.awaiting}` : 'is holding'} ${where(state)}`
    throw new RolloutConflictError(`nothing to approve: ${what}, not awaiting an approval`)
  }
  const reason = `approved by ${actor ?? 'an operator'} ${where(state)}`
  return {
    state: { ...state, awaiting: null, approvedStep: state.step, reason: null, revision: state.revision + 1 },
    changed: true,
    audit: { action: 'rollout.approve', source: 'admin', actor, reason },
  }
}

/**
 * Whether the driver should check the gates before this interval's verdict:
 * the rollout is progressing through its steps, the hold has passed and any
 * approval the step asks for was given. The order on a step is hold,
 * approval, gates, window.
 */
export function gatesDue(state: RolloutState, now: number): boolean {
  if (state.status !== 'progressing' || state.phase !== 'steps' || (state.gates ?? []).length === 0) return false
  const step = state.steps[state.step]
  if (!step || now - state.holdStartedAt! < step.holdMs) return false
  return !step.approval || state.approvedStep === state.step
}

const unchanged = (state: RolloutState): RolloutTransition => ({ state, changed: false })

/** A breach of the analysis or of a gate's timeout: rolls back or pauses, as `onBreach` says. */
function breach(state: RolloutState, reason: string, now: number): RolloutTransition {
  if (state.onBreach === 'rollback') return rollBack(state, now, reason, 'rollout.rollback', 'analysis', null)
  if (state.status === 'paused') return unchanged(state)
  return {
    state: { ...state, status: 'paused', reason, awaiting: null, revision: state.revision + 1 },
    changed: true,
    audit: { action: 'rollout.pause', source: 'analysis', actor: null, reason },
  }
}

/** Holds the step awaiting `what`; changes the state only when what it awaits, or why, changed. */
function wait(state: RolloutState, what: string, reason: string, gateFailingSince: number | null): RolloutTransition {
  const since = state.gateFailingSince ?? null
  if (state.awaiting === what && state.reason === reason && since === gateFailingSince) return unchanged(state)
  const out: RolloutTransition = {
    state: { ...state, awaiting: what, reason, gateFailingSince, revision: state.revision + 1 },
    changed: true,
  }
  // The audit records the start of a wait, not every check while it lasts.
  if (state.awaiting !== what) out.audit = { action: 'rollout.await', source: 'rollout', actor: null, reason }
  return out
}

function onVerdict(
  state: RolloutState,
  verdict: Verdict,
  now: number,
  checks: readonly GateCheck[] | undefined,
): RolloutTransition {
  if (!isActive(state) || state.phase !== 'steps') return unchanged(state)
  if (verdict.outcome === 'breach') return breach(state, `${verdict.reason} ${where(state)}`, now)
  if (verdict.outcome !== 'pass' || state.status !== 'progressing') return unchanged(state)
  const step = state.steps[state.step]!
  const hold = step.holdMs
  if (now - state.holdStartedAt! < hold) return unchanged(state)
  if (step.approval && state.approvedStep !== state.step) {
    return wait(state, 'approval', `${stepName(state, state.step)} (weight ${step.weight}) held ${hold} ms: awaits an approval`, null)
  }
  let gateText = ''
  if ((state.gates ?? []).length > 0) {
    // Gates are due but were not checked this interval: nothing to decide on.
    if (checks === undefined) return unchanged(state)
    const failing = checks.find((c) => c.result !== 'pass')
    if (failing) {
      const since = state.gateFailingSince ?? now
      const limit = state.gateTimeoutMs
      if (limit != null && now - since >= limit) {
        return breach(state, `${failing.reason}, still failing after ${limit} ms ${where(state)}`, now)
      }
      return wait(state, `gate:${failing.gate}`, `${failing.reason} ${where(state)}`, since)
    }
    gateText = `; gates passed: ${checks.map((c) => c.reason).join('; ')}`
  }
  if (!inAnyWindow(state.windows ?? [], now)) {
    return wait(state, 'window', `outside every deploy window ${where(state)}`, null)
  }
  const out = enterStep(state, state.step + 1, now, false)
  const promoted = out.state.status === 'promoted'
  const approved = step.approval ? ', approved' : ''
  const reason = `${stepName(state, state.step)} (weight ${weightOf(state)}) held ${hold} ms with no breach${approved}: ${verdict.reason}${gateText}`
  out.state.reason = promoted ? `promoted: ${reason}` : null
  out.audit = {
    action: promoted ? 'rollout.promote' : 'rollout.step',
    source: 'rollout',
    actor: null,
    reason: promoted ? `promoted: ${reason}` : `to ${stepName(state, state.step + 1)}: ${reason}`,
  }
  return out
}

function onMirror(state: RolloutState, f: MirrorFigures, increaseMs: number, now: number): RolloutTransition {
  if (!isActive(state) || state.phase !== 'mirror' || state.mirror === null) return unchanged(state)
  const m = state.mirror
  if (f.copied < m.minRequests) return unchanged(state)
  const copies = `${f.copied} copies`
  const mismatchRate = f.mismatches / f.copied
  const rateText = `mirror mismatch rate ${Number(mismatchRate.toFixed(4))}`
  if (mismatchRate > m.maxMismatchRate) {
    const reason = `${rateText} exceeds ${m.maxMismatchRate} (${f.mismatches} of ${copies}) in the mirror phase`
    return rollBack(state, now, reason, 'rollout.rollback', 'analysis', null)
  }
  const shadow = f.shadowP95Ms ?? 0
  const primary = f.primaryP95Ms ?? 0
  const hasRatio = f.shadowP95Ms !== null && primary > 0
  const p95Limit = `primary p95 ${primary.toFixed(1)} ms x ${m.maxP95Ratio}${increaseMs > 0 ? ` and + ${increaseMs} ms` : ''}`
  // A ratio alone would roll back 3 ms against 1 ms: the steps' rule (README "Rollouts") applies here too.
  if (hasRatio && shadow > primary * m.maxP95Ratio && shadow - primary > increaseMs) {
    const reason = `shadow p95 ${shadow.toFixed(1)} ms exceeds ${p95Limit} (${copies}) in the mirror phase`
    return rollBack(state, now, reason, 'rollout.rollback', 'analysis', null)
  }
  const p95Text = hasRatio ? `shadow p95 ${shadow.toFixed(1)} ms within ${p95Limit}` : 'no shadow p95 to compare yet'
  if (state.status !== 'progressing' || now - state.holdStartedAt! < m.holdMs) return unchanged(state)
  const out = enterStep(state, 0, now, true)
  const reason =
    `mirror phase held ${m.holdMs} ms within limits: ${rateText} within ${m.maxMismatchRate}, ` +
    `${p95Text} (${copies})`
  out.audit = {
    action: out.state.status === 'promoted' ? 'rollout.promote' : 'rollout.step',
    source: 'rollout',
    actor: null,
    reason,
  }
  if (out.state.status === 'promoted') out.state.reason = `promoted: ${reason}`
  return out
}
