import { describe, expect, it } from 'vitest'
import type { Verdict } from '../../../src/analysis/verdict.js'
import { RolloutConflictError, RolloutInvalidError } from '../../../src/errors.js'
import {
  type MirrorFigures,
  type RolloutEvent,
  type RolloutTransition,
  transition,
} from '../../../src/rollout/rollout-machine.js'
import { idleRollout, type RolloutState, rolloutWeights } from '../../../src/rollout/rollout-state.js'

const T0 = 1_700_000_000_000
const pass: Verdict = { outcome: 'pass', figure: null, reason: 'canary error rate 0 within baseline 0 + 0.02' }
const wait: Verdict = { outcome: 'wait', figure: null, reason: 'waiting for 100 requests per version' }
const breach: Verdict = {
  outcome: 'breach',
  figure: 'error_rate',
  reason: 'canary error rate 0.104 exceeds baseline 0.001 + 0.02 (z=8.1 > 2.33; 212 vs 1840 requests)',
}

const steps = [
  { weight: 5, holdMs: 60_000 },
  { weight: 25, holdMs: 60_000 },
  { weight: 100, holdMs: 60_000 },
]

/** Drives the machine under a fake clock, keeping the last transition. */
function driver(state: RolloutState = idleRollout()) {
  const d = {
    now: T0,
    state,
    last: undefined as RolloutTransition | undefined,
    send(event: RolloutEvent): RolloutTransition {
      const t = transition(d.state, event, d.now)
      d.state = t.state
      d.last = t
      return t
    },
    /** One verdict per second for `ms`. */
    verdicts(verdict: Verdict, ms: number): RolloutTransition[] {
      const out: RolloutTransition[] = []
      for (let i = 0; i < ms / 1000; i++) {
        d.now += 1000
        out.push(d.send({ type: 'verdict', verdict }))
      }
      return out
    },
  }
  return d
}

function started(extra: Partial<Extract<RolloutEvent, { type: 'start' }>> = {}) {
  const d = driver()
  d.send({ type: 'start', baseline: 'blue', canary: 'green', steps, actor: 'alice', ...extra })
  return d
}

describe('rollout state machine', () => {
  it('a start goes to step 0 and asks for its weights', () => {
    const d = driver()
    const t = d.send({ type: 'start', baseline: 'blue', canary: 'green', steps, actor: 'alice' })
    expect(t.state).toMatchObject({ status: 'progressing', baseline: 'blue', canary: 'green', step: 0, reason: null })
    expect(t.state.phase).toBe('steps')
    expect(t.weights).toEqual({ blue: 95, green: 5 })
    expect(t.audit).toMatchObject({ action: 'rollout.start', source: 'admin', actor: 'alice' })
    expect(t.audit?.reason).toBe('started by alice: green against blue in steps 5, 25, 100; on breach rollback')
    expect(t.state.revision).toBe(1)
  })

  it('a step advances only after its hold passes with passing verdicts', () => {
    const d = started()
    const early = d.verdicts(pass, 59_000)
    expect(early.every((t) => !t.changed)).toBe(true)
    expect(d.state.step).toBe(0)
    const t = d.verdicts(pass, 1000)[0]!
    expect(t.changed).toBe(true)
    expect(t.state.step).toBe(1)
    expect(t.weights).toEqual({ blue: 75, green: 25 })
    expect(t.audit).toMatchObject({ action: 'rollout.step', source: 'rollout' })
    expect(t.audit?.reason).toMatch(/^to step 2 of 3: step 1 of 3 \(weight 5\) held 60000 ms with no breach: canary error rate/)
    expect(t.state.stepStartedAt).toBe(d.now)
  })

  it('no step advances without enough samples, however long the hold', () => {
    const d = started()
    expect(d.verdicts(wait, 600_000).every((t) => !t.changed)).toBe(true)
    expect(d.state.step).toBe(0)
    // the first passing verdict after the hold moves on
    expect(d.verdicts(pass, 1000)[0]!.state.step).toBe(1)
  })

  it('the last step (canary 100) promotes', () => {
    const d = started()
    d.verdicts(pass, 60_000)
    const t = d.verdicts(pass, 60_000).at(-1)!
    expect(t.state.status).toBe('promoted')
    expect(t.state.step).toBe(2)
    expect(t.weights).toEqual({ blue: 0, green: 100 })
    expect(t.ended).toBe(true)
    expect(t.audit).toMatchObject({ action: 'rollout.promote', source: 'rollout' })
    expect(t.state.reason).toMatch(/^promoted: step 2 of 3 \(weight 25\) held 60000 ms/)
    expect(t.state.reached.map((r) => [r.step, r.weight, r.at - T0])).toEqual([
      [0, 5, 0],
      [1, 25, 60_000],
      [2, 100, 120_000],
    ])
    // the end of a rollout ignores later verdicts
    expect(d.verdicts(breach, 1000)[0]!.changed).toBe(false)
  })

  it('a breach with onBreach rollback sends all traffic back to the baseline at once', () => {
    const d = started()
    d.verdicts(pass, 60_000)
    const t = d.verdicts(breach, 1000)[0]!
    expect(t.state.status).toBe('rolled_back')
    expect(t.weights).toEqual({ blue: 100, green: 0 })
    expect(t.ended).toBe(true)
    expect(t.state.reason).toBe(`${breach.reason} at step 2 of 3 (weight 25)`)
    expect(t.audit).toMatchObject({ action: 'rollout.rollback', source: 'analysis', actor: null })
    expect(t.state.endedAt).toBe(d.now)
  })

  it('a breach with onBreach pause freezes the weights until resumed', () => {
    const d = started({ onBreach: 'pause' })
    d.verdicts(pass, 30_000)
    const t = d.verdicts(breach, 1000)[0]!
    expect(t.state.status).toBe('paused')
    expect(t.weights).toBeUndefined()
    expect(t.state.reason).toBe(`${breach.reason} at step 1 of 3 (weight 5)`)
    expect(t.audit).toMatchObject({ action: 'rollout.pause', source: 'analysis' })
    expect(rolloutWeights(t.state)).toEqual({ blue: 95, green: 5 })
    // paused: neither more breaches nor passing holds move it
    expect(d.verdicts(breach, 5000).every((x) => !x.changed)).toBe(true)
    expect(d.verdicts(pass, 120_000).every((x) => !x.changed)).toBe(true)
    const r = d.send({ type: 'resume', actor: 'bob' })
    expect(r.state).toMatchObject({ status: 'progressing', reason: null, holdStartedAt: d.now })
    expect(r.audit?.reason).toBe('resumed by bob at step 1 of 3 (weight 5); the hold of 60000 ms starts again')
    // the hold starts again from the resume
    expect(d.verdicts(pass, 59_000).every((x) => !x.changed)).toBe(true)
    expect(d.verdicts(pass, 1000)[0]!.state.step).toBe(1)
  })

  it('an operator pause does not stop a rollback on breach', () => {
    const d = started()
    d.send({ type: 'pause', actor: 'alice' })
    expect(d.verdicts(breach, 1000)[0]!.state.status).toBe('rolled_back')
  })

  it('pause, resume, promote and abort act on the active rollout', () => {
    const d = started()
    const p = d.send({ type: 'pause', actor: 'alice' })
    expect(p.state).toMatchObject({ status: 'paused', reason: 'paused by alice at step 1 of 3 (weight 5)' })
    expect(p.weights).toBeUndefined()
    expect(p.audit).toMatchObject({ action: 'rollout.pause', source: 'admin', actor: 'alice' })
    d.send({ type: 'resume' })
    const pr = d.send({ type: 'promote', actor: 'carol' })
    expect(pr.state).toMatchObject({ status: 'promoted', step: 2, reason: 'promoted by carol at step 1 of 3 (weight 5)' })
    expect(pr.weights).toEqual({ blue: 0, green: 100 })
    expect(pr.ended).toBe(true)

    const a = started()
    const t = a.send({ type: 'abort', actor: 'dave' })
    expect(t.state).toMatchObject({ status: 'rolled_back', reason: 'aborted by dave at step 1 of 3 (weight 5)' })
    expect(t.weights).toEqual({ blue: 100, green: 0 })
    expect(t.audit).toMatchObject({ action: 'rollout.abort', source: 'admin', actor: 'dave' })
  })

  it('commands with nothing to act on are conflicts with a stable code', () => {
    const idle = driver()
    for (const type of ['pause', 'resume', 'promote', 'abort'] as const) {
      expect(() => idle.send({ type })).toThrow(RolloutConflictError)
    }
    const d = started()
    expect(() => d.send({ type: 'resume' })).toThrow(/nothing to resume: the rollout of "green" is progressing/)
    expect(() => d.send({ type: 'start', baseline: 'blue', canary: 'green', steps })).toThrow(RolloutConflictError)
    d.send({ type: 'pause' })
    expect(() => d.send({ type: 'pause' })).toThrow(RolloutConflictError)
    d.send({ type: 'abort' })
    for (const type of ['pause', 'resume', 'promote', 'abort'] as const) {
      let err: unknown
      try {
        d.send({ type })
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(RolloutConflictError)
      expect(err).toMatchObject({ code: 'SLUICE_ROLLOUT_CONFLICT', status: 409 })
    }
    // a conflict leaves the state as it was
    expect(d.state.status).toBe('rolled_back')
  })

  it('a new rollout can start after the last one ended', () => {
    const d = started()
    d.send({ type: 'abort' })
    const t = d.send({ type: 'start', baseline: 'green', canary: 'blue', steps, actor: 'alice' })
    expect(t.state).toMatchObject({ status: 'progressing', baseline: 'green', canary: 'blue', step: 0, reason: null })
    expect(t.state.reached).toHaveLength(1)
  })

  it('an invalid start is refused with the field at fault', () => {
    const d = driver()
    const bad = (e: Partial<Extract<RolloutEvent, { type: 'start' }>>, path: string) => {
      let err: unknown
      try {
        d.send({ type: 'start', baseline: 'blue', canary: 'green', steps, versions: ['blue', 'green'], ...e })
      } catch (x) {
        err = x
      }
      expect(err).toBeInstanceOf(RolloutInvalidError)
      expect(err).toMatchObject({ code: 'SLUICE_ROLLOUT_INVALID', status: 400, path })
    }
    bad({ canary: 'red' }, 'canary')
    bad({ canary: 'blue' }, 'canary')
    bad({ steps: [] }, 'steps')
    bad({ steps: [{ weight: 50, holdMs: 0 }] }, 'steps.0.weight')
    bad(
      {
        steps: [
          { weight: 50, holdMs: 0 },
          { weight: 20, holdMs: 0 },
          { weight: 100, holdMs: 0 },
        ],
      },
      'steps.1.weight',
    )
    bad(
      {
        steps: [
          { weight: 5.5, holdMs: 0 },
          { weight: 100, holdMs: 0 },
        ],
      },
      'steps.0',
    )
    expect(d.state.status).toBe('idle')
  })

  it('a single step of 100 promotes at the start', () => {
    const d = driver()
    const t = d.send({ type: 'start', baseline: 'blue', canary: 'green', steps: [{ weight: 100, holdMs: 0 }] })
    expect(t.state.status).toBe('promoted')
    expect(t.weights).toEqual({ blue: 0, green: 100 })
    expect(t.ended).toBe(true)
    expect(t.audit?.action).toBe('rollout.start')
  })

  it('the state is plain JSON another proxy resumes from, hold and all', () => {
    const a = started()
    a.verdicts(pass, 40_000)
    const stored = JSON.parse(JSON.stringify(a.state)) as RolloutState
    const b = driver(stored)
    b.now = a.now
    expect(rolloutWeights(b.state)).toEqual({ blue: 95, green: 5 })
    expect(b.verdicts(pass, 19_000).every((t) => !t.changed)).toBe(true)
    expect(b.verdicts(pass, 1000)[0]!.state.step).toBe(1)
  })

  it('carries the /v1/state rollout fields the README lists', () => {
    const idle = idleRollout()
    expect(idle).toMatchObject({ status: 'idle', baseline: null, canary: null, step: -1, reason: null })
    expect(rolloutWeights(idle)).toBeNull()
    const d = started()
    expect(Object.keys(d.state)).toEqual(expect.arrayContaining(['status', 'baseline', 'canary', 'step', 'reason']))
  })
})

describe('rollout mirror phase', () => {
  const mirror = { percent: 10, holdMs: 30_000, maxMismatchRate: 0.01, maxP95Ratio: 1.5, minRequests: 50 }
  const good: MirrorFigures = { copied: 400, mismatches: 1, shadowP95Ms: 13, primaryP95Ms: 12 }

  function mirrored(extra: Partial<Extract<RolloutEvent, { type: 'start' }>> = {}) {
    const d = started({ mirror, ...extra })
    return {
      ...d,
      d,
      figures(f: MirrorFigures, ms: number, maxP95IncreaseMs = 0): RolloutTransition[] {
        const out: RolloutTransition[] = []
        for (let i = 0; i < ms / 1000; i++) {
          d.now += 1000
          out.push(d.send({ type: 'mirror', figures: f, maxP95IncreaseMs }))
        }
        return out
      },
    }
  }

  it('starts with the canary at 0 and mirroring to it', () => {
    const { d } = mirrored()
    const t = d.last!
    expect(t.state).toMatchObject({ status: 'progressing', phase: 'mirror', step: -1 })
    expect(t.weights).toEqual({ blue: 100, green: 0 })
    expect(t.mirror).toEqual({ version: 'green', percent: 10 })
    expect(t.audit?.reason).toMatch(/after a 10% mirror phase of 30000 ms/)
    // analysis verdicts do not apply while only copies reach the canary
    expect(d.verdicts(breach, 1000)[0]!.changed).toBe(false)
  })

  it('passes to step 0 after holding within limits with enough copies', () => {
    const m = mirrored()
    expect(m.figures({ ...good, copied: 40 }, 60_000).every((t) => !t.changed)).toBe(true) // too few copies
    const t = m.figures(good, 1000)[0]!
    expect(t.state).toMatchObject({ phase: 'steps', step: 0, status: 'progressing' })
    expect(t.weights).toEqual({ blue: 95, green: 5 })
    expect(t.mirror).toBeNull()
    expect(t.audit).toMatchObject({ action: 'rollout.step', source: 'rollout' })
    expect(t.audit?.reason).toBe(
      'mirror phase held 30000 ms within limits: mirror mismatch rate 0.0025 within 0.01, ' +
        'shadow p95 13.0 ms within primary p95 12.0 ms x 1.5 (400 copies)',
    )
    expect(t.state.reached.map((r) => r.step)).toEqual([-1, 0])
  })

  it('does not pass before its hold', () => {
    const m = mirrored()
    expect(m.figures(good, 29_000).every((t) => !t.changed)).toBe(true)
    expect(m.figures(good, 1000)[0]!.changed).toBe(true)
  })

  it('rolls back when the shadow mismatches too often', () => {
    const m = mirrored({ onBreach: 'pause' })
    const t = m.figures({ ...good, mismatches: 20 }, 1000)[0]!
    expect(t.state.status).toBe('rolled_back')
    expect(t.state.reason).toBe('mirror mismatch rate 0.05 exceeds 0.01 (20 of 400 copies) in the mirror phase')
    expect(t.weights).toEqual({ blue: 100, green: 0 })
    expect(t.mirror).toBeNull()
    expect(t.ended).toBe(true)
  })

  it('rolls back when the shadow is too slow', () => {
    const m = mirrored()
    const t = m.figures({ ...good, shadowP95Ms: 40 }, 1000)[0]!
    expect(t.state.status).toBe('rolled_back')
    expect(t.state.reason).toBe('shadow p95 40.0 ms exceeds primary p95 12.0 ms x 1.5 (400 copies) in the mirror phase')
  })

  it('needs the p95 difference as well as the ratio, as the steps do (analysis.maxP95IncreaseMs)', () => {
    // 3x slower but 8 ms apart: latency noise, not a breach.
    const fast = mirrored().figures({ ...good, shadowP95Ms: 12, primaryP95Ms: 4 }, 1000, 100)[0]!
    expect(fast.state.status).toBe('progressing')
    const slow = mirrored().figures({ ...good, shadowP95Ms: 150, primaryP95Ms: 12 }, 1000, 100)[0]!
    expect(slow.state.status).toBe('rolled_back')
    expect(slow.state.reason).toBe(
      'shadow p95 150.0 ms exceeds primary p95 12.0 ms x 1.5 and + 100 ms (400 copies) in the mirror phase',
    )
  })

  it('can be paused, resumed, promoted and aborted', () => {
    const m = mirrored()
    m.d.send({ type: 'pause', actor: 'alice' })
    expect(m.d.state.reason).toBe('paused by alice in the mirror phase')
    expect(m.figures(good, 60_000).every((t) => !t.changed)).toBe(true)
    m.d.send({ type: 'resume' })
    expect(m.figures(good, 29_000).every((t) => !t.changed)).toBe(true)
    const a = mirrored().d.send({ type: 'abort' })
    expect(a.mirror).toBeNull()
    expect(a.weights).toEqual({ blue: 100, green: 0 })
    const p = mirrored().d.send({ type: 'promote' })
    expect(p.mirror).toBeNull()
    expect(p.weights).toEqual({ blue: 0, green: 100 })
  })
})
