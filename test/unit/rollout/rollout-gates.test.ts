import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Verdict } from '../../../src/analysis/verdict.js'
import { RolloutConflictError } from '../../../src/errors.js'
import type { DeployWindow } from '../../../src/rollout/deploy-window.js'
import type { Gate } from '../../../src/rollout/gates-schema.js'
import { type GateCheck, gatesDue, type RolloutEvent, transition } from '../../../src/rollout/rollout-machine.js'
import { notifyEvents } from '../../../src/rollout/rollout-events.js'
import { idleRollout, type RolloutState, rolloutWeights } from '../../../src/rollout/rollout-state.js'

/** Tuesday 2023-11-14 22:13:20 UTC. */
const T0 = 1_700_000_000_000
const pass: Verdict = { outcome: 'pass', figure: null, reason: 'canary error rate 0 within baseline 0 + 0.02' }
const breach: Verdict = { outcome: 'breach', figure: 'error_rate', reason: 'canary error rate 0.2 exceeds 0.02' }

const steps = [
  { weight: 5, holdMs: 10_000 },
  { weight: 25, holdMs: 10_000, approval: true },
  { weight: 50, holdMs: 10_000, approval: true },
  { weight: 100, holdMs: 0 },
]
const gates: Gate[] = [
  { name: 'smoke', webhook: { url: 'http://127.0.0.1:1/', timeoutMs: 1000, headers: {} } },
  {
    name: 'conversion',
    prometheus: { url: 'http://127.0.0.1:1/', query: 'x', min: 0.95, timeoutMs: 1000, headers: {} },
  },
]
const ok: GateCheck[] = [
  { gate: 'smoke', result: 'pass', reason: 'gate smoke: webhook answered 204' },
  { gate: 'conversion', result: 'pass', reason: 'gate conversion: 0.97 within min 0.95' },
]
const low: GateCheck[] = [ok[0]!, { gate: 'conversion', result: 'fail', reason: 'gate conversion: 0.9 below min 0.95' }]

function machine(extra: Partial<Extract<RolloutEvent, { type: 'start' }>> = {}) {
  const m = {
    now: T0,
    state: idleRollout(),
    send(event: RolloutEvent) {
      const t = transition(m.state, event, m.now)
      m.state = t.state
      return t
    },
    /** A verdict after `ms`, with gate checks when the driver would run them. */
    after(ms: number, verdict: Verdict = pass, checks: GateCheck[] = ok) {
      m.now += ms
      const due = gatesDue(m.state, m.now)
      return m.send({ type: 'verdict', verdict, ...(due && { gates: checks }) })
    },
  }
  m.send({ type: 'start', baseline: 'blue', canary: 'green', steps, ...extra })
  return m
}

describe('approval steps', () => {
  it('a step with approval waits after its hold until approved; approve before that is 409', () => {
    const m = machine()
    m.after(10_000)
    expect(m.state.step).toBe(1)
    expect(() => m.send({ type: 'approve', actor: 'ann' })).toThrow(RolloutConflictError)
    m.after(5_000)
    expect(m.state.awaiting).toBe(null)
    const t = m.after(5_000)
    expect(t.audit?.action).toBe('rollout.await')
    expect(m.state).toMatchObject({ step: 1, status: 'progressing', awaiting: 'approval' })
    // Waiting changes nothing more, however long.
    expect(m.after(60_000).changed).toBe(false)
    const a = m.send({ type: 'approve', actor: 'ann' })
    expect(a.audit).toMatchObject({ action: 'rollout.approve', actor: 'ann' })
    expect(a.audit!.reason).toContain('approved by ann at step 2 of 4 (weight 25)')
    expect(m.state.awaiting).toBe(null)
    expect(() => m.send({ type: 'approve', actor: 'ann' })).toThrow(RolloutConflictError)
    m.after(1000)
    expect(m.state.step).toBe(2)
    expect(rolloutWeights(m.state)).toEqual({ blue: 50, green: 50 })
  })

  it('a breach while awaiting an approval still rolls back (or pauses)', () => {
    const m = machine()
    m.after(10_000)
    m.after(10_000)
    expect(m.state.awaiting).toBe('approval')
    const t = m.after(1000, breach)
    expect(m.state).toMatchObject({ status: 'rolled_back', awaiting: null })
    expect(t.weights).toEqual({ blue: 100, green: 0 })

    const p = machine({ onBreach: 'pause' })
    p.after(10_000)
    p.after(10_000)
    p.after(1000, breach)
    expect(p.state).toMatchObject({ status: 'paused', awaiting: null, step: 1 })
  })
})

describe('gates', () => {
  it('run only after the hold and the approval: the order is hold, approval, gates, window', () => {
    const m = machine({ gates })
    expect(gatesDue(m.state, m.now + 9_999)).toBe(false)
    expect(gatesDue(m.state, m.now + 10_000)).toBe(true)
    m.after(10_000)
    expect(m.state.step).toBe(1)
    m.after(10_000)
    expect(m.state.awaiting).toBe('approval')
    expect(gatesDue(m.state, m.now)).toBe(false)
    m.send({ type: 'approve', actor: null })
    expect(gatesDue(m.state, m.now)).toBe(true)
  })

  it('a failing gate holds the step, names the gate and value, and counts as a breach after gateTimeoutMs', () => {
    const m = machine({ gates, gateTimeoutMs: 30_000 })
    m.after(10_000, pass, low)
    expect(m.state).toMatchObject({ step: 0, awaiting: 'gate:conversion', gateFailingSince: T0 + 10_000 })
    expect(m.state.reason).toBe('gate conversion: 0.9 below min 0.95 at step 1 of 4 (weight 5)')
    m.after(29_000, pass, low)
    expect(m.state.status).toBe('progressing')
    const t = m.after(1000, pass, low)
    expect(m.state.status).toBe('rolled_back')
    expect(t.audit?.reason).toContain('gate conversion: 0.9 below min 0.95, still failing after 30000 ms')
  })

  it('a gate that passes again resets its timeout; an unchecked interval decides nothing', () => {
    const m = machine({ gates, gateTimeoutMs: 30_000 })
    m.after(10_000, pass, low)
    m.after(20_000, pass, low)
    expect(m.send({ type: 'verdict', verdict: pass }).changed).toBe(false)
    m.after(1000, pass, ok)
    expect(m.state).toMatchObject({ step: 1, awaiting: null, gateFailingSince: null })
  })

  it('with onBreach pause a timed-out gate pauses; resume starts the hold and the timeout again', () => {
    const m = machine({ gates, gateTimeoutMs: 5_000, onBreach: 'pause' })
    m.after(10_000, pass, low)
    m.after(5_000, pass, low)
    expect(m.state).toMatchObject({ status: 'paused', step: 0 })
    m.send({ type: 'resume', actor: null })
    expect(m.state).toMatchObject({ status: 'progressing', gateFailingSince: null, awaiting: null })
    m.after(10_000, pass, low)
    expect(m.state).toMatchObject({ status: 'progressing', awaiting: 'gate:conversion' })
  })
})

describe('windows', () => {
  // T0 is a Tuesday, 22:13 UTC.
  it('outside every window a held step waits; inside it advances', () => {
    const windows: DeployWindow[] = [{ days: ['mon'], from: '09:00', to: '16:00' }]
    const m = machine({ windows })
    expect(m.state.step).toBe(0) // starting and entering the first step never wait
    m.after(10_000)
    expect(m.state).toMatchObject({ step: 0, awaiting: 'window' })
    // The next Monday, 09:00 UTC.
    m.now = Date.UTC(2023, 10, 20, 9, 0) - 1000
    m.after(1000)
    expect(m.state).toMatchObject({ step: 1, awaiting: null })
  })

  it('a breach outside the window still rolls back', () => {
    const m = machine({ windows: [{ days: ['mon'], from: '09:00', to: '16:00' }] })
    m.after(10_000)
    m.after(1000, breach)
    expect(m.state.status).toBe('rolled_back')
  })
})

describe('notification events', () => {
  it('a whole rollout gives started, step, awaiting, step, promoted in order', () => {
    const m = machine({ gates })
    const events: string[] = []
    let seen: RolloutState = idleRollout()
    const see = () => {
      events.push(...notifyEvents(seen, m.state))
      seen = m.state
    }
    see()
    m.after(10_000)
    see()
    m.after(10_000)
    see()
    m.send({ type: 'approve', actor: null })
    see()
    m.after(1000)
    see()
    m.after(10_000)
    see()
    m.send({ type: 'promote', actor: null })
    see()
    expect(events).toEqual(['started', 'step', 'awaiting', 'step', 'awaiting', 'promoted'])
  })

  it('an operator pause and a rollback seen late are still told', () => {
    const m = machine()
    const started = m.state
    m.send({ type: 'pause', actor: null })
    expect(notifyEvents(started, m.state)).toEqual(['paused'])
    m.send({ type: 'abort', actor: null })
    expect(notifyEvents(started, m.state)).toEqual(['rolled_back'])
    expect(notifyEvents(m.state, m.state)).toEqual([])
  })

  it('no event is told twice and none is invented: property over random event sequences', () => {
    const ev = fc.constantFrom<'pass' | 'low' | 'approve' | 'pause' | 'resume' | 'breach'>(
      'pass',
      'low',
      'approve',
      'pause',
      'resume',
      'breach',
    )
    fc.assert(
      fc.property(fc.array(ev, { maxLength: 30 }), (seq) => {
        const m = machine({ gates, gateTimeoutMs: 60_000 })
        let seen = idleRollout()
        const events: string[] = [...notifyEvents(seen, m.state)]
        seen = m.state
        for (const e of seq) {
          try {
            if (e === 'pass') m.after(10_000)
            else if (e === 'low') m.after(10_000, pass, low)
            else if (e === 'breach') m.after(1000, breach)
            else m.send({ type: e, actor: null })
          } catch (err) {
            if (!(err instanceof RolloutConflictError)) throw err
          }
          events.push(...notifyEvents(seen, m.state))
          seen = m.state
        }
        expect(events[0]).toBe('started')
        expect(events.filter((x) => x === 'started')).toHaveLength(1)
        const ends = events.filter((x) => x === 'promoted' || x === 'rolled_back')
        expect(ends.length).toBeLessThanOrEqual(1)
        if (ends.length === 1) expect(events.at(-1)).toBe(ends[0])
        expect(events.filter((x) => x === 'step').length).toBeLessThanOrEqual(2)
      }),
      { numRuns: 200 },
    )
  })
})
