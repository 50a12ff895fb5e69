import { describe, expect, it } from 'vitest'
import { BUCKETS, bucketIndex, toSparse } from '../../../src/analysis/histogram.js'
import type { SliceSnapshot } from '../../../src/analysis/slices.js'
import { transition } from '../../../src/rollout/rollout-machine.js'
import { idleRollout, type RolloutState } from '../../../src/rollout/rollout-state.js'
import { newestWithEnough, rolloutVerdict } from '../../../src/rollout/rollout-verdict.js'

const SLICE = 1000
const T0 = 1_700_000_000_000
const limits = { minRequests: 100, maxErrorRateIncrease: 0.02, maxP95Ratio: 1.5, maxP95IncreaseMs: 100 }

function slice(startMs: number, requests: number, errors: number, latencyMs = 10): SliceSnapshot {
  const counts = new Uint32Array(BUCKETS)
  counts[bucketIndex(latencyMs)] = requests
  return { startMs, requests, errors, latency: toSparse(counts, 0) }
}

/** Slices i = 0..n-1 starting at `from + i * SLICE`, each made by `make(i)`. */
function series(from: number, n: number, make: (i: number) => [requests: number, errors: number]): SliceSnapshot[] {
  return Array.from({ length: n }, (_, i) => slice(from + i * SLICE, ...make(i)))
}

function startedAt(
  t: number,
  steps = [
    { weight: 10, holdMs: 0 },
    { weight: 100, holdMs: 0 },
  ],
): RolloutState {
  return transition(idleRollout(), { type: 'start', baseline: 'blue', canary: 'green', steps }, t).state
}

const verdict = (state: RolloutState, baseline: SliceSnapshot[], canary: SliceSnapshot[]) =>
  rolloutVerdict({ state, baseline, canary, sliceMs: SLICE, canaryUsable: true, limits })

describe('the verdict on a running rollout', () => {
  it('errors of the canary from before the rollout started do not roll a fresh start back', () => {
    // A failed attempt 10 s ago is still in the window; the rollout starts at T0 + 10 s.
    const state = startedAt(T0 + 10_000)
    const baseline = series(T0, 13, () => [200, 0])
    const canary = series(T0, 13, (i) => (i < 5 ? [100, 50] : i >= 10 ? [60, 0] : [0, 0])).filter((s) => s.requests)
    const v = verdict(state, baseline, canary)
    expect(v.outcome).toBe('pass')
    expect(v.reason).toContain('180 vs 600 requests')
  })

  it('waits for minRequests of the current step before it passes, whatever earlier steps showed', () => {
    let state = startedAt(T0, [
      { weight: 10, holdMs: 0 },
      { weight: 50, holdMs: 0 },
      { weight: 100, holdMs: 0 },
    ])
    state = { ...state, step: 1, stepStartedAt: T0 + 5_000, holdStartedAt: T0 + 5_000 }
    const baseline = series(T0, 6, () => [300, 0])
    const canary = series(T0, 6, (i) => (i < 5 ? [100, 0] : [40, 0]))
    const v = verdict(state, baseline, canary)
    expect(v.outcome).toBe('wait')
    expect(v.reason).toContain('40 vs 300 requests')
  })

  it('a canary that starts failing after minutes of good traffic breaches on its newest minRequests', () => {
    const state = startedAt(T0)
    // 60 s of good canary traffic, then 2 slices at 30% errors.
    const baseline = series(T0, 62, () => [500, 0])
    const canary = series(T0, 62, (i) => (i < 60 ? [100, 0] : [100, 30]))
    const v = verdict(state, baseline, canary)
    expect(v.outcome).toBe('breach')
    expect(v.figure).toBe('error_rate')
    expect(v.reason).toContain('100 vs 500 requests')
  })

  it('a small steady excess becomes a breach over the whole rollout though no single step shows it', () => {
    let state = startedAt(T0, [
      { weight: 10, holdMs: 0 },
      { weight: 20, holdMs: 0 },
      { weight: 100, holdMs: 0 },
    ])
    state = { ...state, step: 1, stepStartedAt: T0 + 10_000, holdStartedAt: T0 + 10_000 }
    // 10% errors against 5%, 3 points over the margin: over the step's 100 requests z = 1.0 < 2.33;
    // over the rollout's 1100, z = 3.2.
    const baseline = series(T0, 11, () => [1000, 50])
    const canary = series(T0, 11, () => [100, 10])
    const v = verdict(state, baseline, canary)
    expect(v.outcome).toBe('breach')
    expect(v.reason).toContain('1100 vs 11000 requests')
  })

  it('a canary with no usable instance is a breach; one never probed yet is a wait', () => {
    const state = startedAt(T0)
    const input = { state, baseline: [], canary: [], sliceMs: SLICE, limits }
    expect(rolloutVerdict({ ...input, canaryUsable: false }).figure).toBe('usable')
    expect(rolloutVerdict({ ...input, canaryUsable: undefined }).outcome).toBe('wait')
  })

  it('a latency breach is found like an error breach', () => {
    const state = startedAt(T0)
    const baseline = series(T0, 3, () => [300, 0])
    const canary = [slice(T0, 100, 0, 10), slice(T0 + SLICE, 100, 0, 320), slice(T0 + 2 * SLICE, 50, 0, 320)]
    const v = verdict(state, baseline, canary)
    expect(v.figure).toBe('p95')
  })
})

describe('newestWithEnough', () => {
  it('finds the newest slice start from which both versions have minRequests', () => {
    const b = series(T0, 5, () => [50, 0])
    const c = series(T0, 5, () => [30, 0])
    // Canary needs 4 slices for 100 (30 x 4 = 120); baseline 2.
    expect(newestWithEnough(b, c, 100)).toBe(T0 + SLICE)
    expect(newestWithEnough(b, c, 1000)).toBe(Number.NEGATIVE_INFINITY)
  })

  it('walks lists with gaps slice start by slice start', () => {
    const b = [slice(T0, 100, 0), slice(T0 + 3 * SLICE, 100, 0)]
    const c = [slice(T0 + SLICE, 100, 0), slice(T0 + 2 * SLICE, 10, 0)]
    expect(newestWithEnough(b, c, 100)).toBe(T0 + SLICE)
  })
})
