import { describe, expect, it } from 'vitest'
import { VersionWindow } from '../../../src/analysis/version-window.js'
import { feedFigures, startFigures, summarize } from '../../../src/rollout/rollout-figures.js'
import { transition } from '../../../src/rollout/rollout-machine.js'
import { buildReport } from '../../../src/rollout/rollout-report.js'
import { idleRollout } from '../../../src/rollout/rollout-state.js'

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5)

describe('rollout figures and report', () => {
  it('counts each completed slice once, from the rollout start on', () => {
    const clock = { t: T0 - 500 }
    const opts = { windowMs: 10_000, sliceMs: 1000, now: () => clock.t }
    const blue = new VersionWindow(opts)
    const green = new VersionWindow(opts)
    blue.record(false, 1) // before the rollout started: left out
    clock.t = T0
    let figures = startFigures(T0)
    for (let s = 0; s < 20; s++) {
      clock.t += 1000
      blue.tick()
      green.tick()
      for (let i = 0; i < 10; i++) blue.record(false, 10)
      green.record(s % 2 === 0, 50)
      // offered every interval, and sometimes twice
      for (let k = 0; k < (s % 3 === 0 ? 2 : 1); k++) {
        figures = feedFigures(figures, blue.exportSlices(), green.exportSlices(), blue.currentSliceStart)
      }
    }
    // the slice in progress has not been counted yet
    expect(figures.baseline.requests).toBe(190)
    figures = JSON.parse(JSON.stringify(figures))
    figures = feedFigures(figures, blue.exportSlices(), green.exportSlices(), Number.POSITIVE_INFINITY)
    expect(summarize(figures.baseline)).toMatchObject({ requests: 200, errors: 0, errorRate: 0 })
    const canary = summarize(figures.canary)
    expect(canary).toMatchObject({ requests: 20, errors: 10, errorRate: 0.5 })
    expect(canary.p95Ms).toBeCloseTo(50, 0)
  })

  it('reports start, end, actor, steps reached, outcome, reason and figures', () => {
    let state = idleRollout()
    expect(buildReport(state, startFigures(0))).toBeNull()
    const steps = [
      { weight: 10, holdMs: 1000 },
      { weight: 100, holdMs: 0 },
    ]
    state = transition(state, { type: 'start', baseline: 'blue', canary: 'green', steps, actor: 'alice' }, T0).state
    const active = buildReport(state, startFigures(T0))!
    expect(active).toMatchObject({ outcome: 'progressing', endedAt: null, reason: null })
    const reason = 'canary has no usable instance (0 vs 300 requests)'
    state = transition(
      state,
      { type: 'verdict', verdict: { outcome: 'breach', figure: 'usable', reason } },
      T0 + 5000,
    ).state
    const figures = {
      fedUntilMs: T0 + 5000,
      baseline: { requests: 300, errors: 3, latency: [] },
      canary: { requests: 0, errors: 0, latency: [] },
    }
    expect(buildReport(state, figures)).toEqual({
      id: `green-${T0}`,
      baseline: 'blue',
      canary: 'green',
      actor: 'alice',
      onBreach: 'rollback',
      startedAt: '2025-01-02T03:04:05.000Z',
      endedAt: '2025-01-02T03:04:10.000Z',
      outcome: 'rolled_back',
      reason: `${reason} at step 1 of 2 (weight 10)`,
      steps: [{ step: 0, weight: 10, at: '2025-01-02T03:04:05.000Z' }],
      figures: {
        baseline: { requests: 300, errors: 3, errorRate: 0.01, p95Ms: 0 },
        canary: { requests: 0, errors: 0, errorRate: 0, p95Ms: 0 },
      },
    })
  })
})
