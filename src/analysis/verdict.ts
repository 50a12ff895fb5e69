import type { WindowFigures } from './figures.js'
import { normalQuantile } from './normal-quantile.js'

/** The `analysis` config section's limits; `Config['analysis']` fits as is. */
export interface AnalysisLimits {
  readonly minRequests: number
  readonly maxErrorRateIncrease: number
  readonly maxP95Ratio: number
  readonly maxP95IncreaseMs: number
  /** Confidence of the one-sided two-proportion z-test, 0.99 when absent. */
  readonly confidence?: number
}

/** Only the counts and the p95 are read; `WindowFigures` fits. */
export type JudgedFigures = Pick<WindowFigures, 'requests' | 'errors' | 'p95Ms'>

export type Verdict =
  /** Not enough samples in either window for any conclusion. */
  | { outcome: 'wait'; figure: null; reason: string }
  | { outcome: 'pass'; figure: null; reason: string }
  | { outcome: 'breach'; figure: 'usable' | 'error_rate' | 'p95'; reason: string }

/**
 * The canary against its baseline, from their windows alone.
 *
 * - A canary with no usable instance is a breach at once: its share of
 *   traffic is being served by other versions, so nothing is being learnt
 *   and the operator must know.
 * - Below `minRequests` in either window there is no verdict (`wait`).
 * - Error breach: the canary's error rate exceeds the baseline's by more
 *   than `maxErrorRateIncrease`, AND a one-sided two-proportion z-test
 *   (pooled variance) says the canary's rate is higher at `confidence`.
 *   The test is what keeps one unlucky error in a hundred requests from
 *   rolling back, while a real 10% error rate crosses z = 2.33 within a few
 *   hundred requests. When the baseline fails as much, nothing is blamed on
 *   the canary.
 * - Latency breach: canary p95 > baseline p95 x `maxP95Ratio` AND canary
 *   p95 - baseline p95 > `maxP95IncreaseMs` (a ratio alone would flag 3 ms
 *   against 1 ms; a difference alone would flag noise on slow endpoints).
 *
 * Every reason names the figure, its value, the limit and the sample sizes.
 */
export function judge(
  baseline: JudgedFigures,
  canary: JudgedFigures,
  canaryUsable: boolean,
  limits: AnalysisLimits,
): Verdict {
  const samples = `${canary.requests} vs ${baseline.requests} requests`
  if (!canaryUsable) {
    return { outcome: 'breach', figure: 'usable', reason: `canary has no usable instance (${samples})` }
  }
  if (canary.requests < limits.minRequests || baseline.requests < limits.minRequests) {
    return {
      outcome: 'wait',
      figure: null,
      reason: `waiting for ${limits.minRequests} requests per version in the window (${samples})`,
    }
  }

  const pc = canary.errors / canary.requests
  const pb = baseline.errors / baseline.requests
  const z = twoProportionZ(canary.errors, canary.requests, baseline.errors, baseline.requests)
  const zCrit = normalQuantile(limits.confidence ?? 0.99)
  const errorLimit = `baseline ${rate(pb)} + ${limits.maxErrorRateIncrease}`
  const zText = `z=${z.toFixed(1)}`
  if (pc - pb > limits.maxErrorRateIncrease && z > zCrit) {
    return {
      outcome: 'breach',
      figure: 'error_rate',
      reason: `canary error rate ${rate(pc)} exceeds ${errorLimit} (${zText} > ${zCrit.toFixed(2)}; ${samples})`,
    }
  }

  const cp = canary.p95Ms
  const bp = baseline.p95Ms
  const latencyLimit = `baseline p95 ${ms(bp)} x ${limits.maxP95Ratio} and + ${limits.maxP95IncreaseMs} ms`
  if (cp > bp * limits.maxP95Ratio && cp - bp > limits.maxP95IncreaseMs) {
    return { outcome: 'breach', figure: 'p95', reason: `canary p95 ${ms(cp)} exceeds ${latencyLimit} (${samples})` }
  }

  const errorPart =
    pc - pb > limits.maxErrorRateIncrease
      ? `canary error rate ${rate(pc)} above ${errorLimit} but not significant (${zText} <= ${zCrit.toFixed(2)})`
      : `canary error rate ${rate(pc)} within ${errorLimit}`
  return {
    outcome: 'pass',
    figure: null,
    reason: `${errorPart}; canary p95 ${ms(cp)} within ${latencyLimit} (${samples})`,
  }
}

/**
 * z statistic of "rate 1 is higher than rate 2" with the pooled proportion.
 * 0 when both rates are 0 or both are 1 (no variance, no difference).
 */
export function twoProportionZ(errors1: number, n1: number, errors2: number, n2: number): number {
  const pooled = (errors1 + errors2) / (n1 + n2)
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
  return se > 0 ? (errors1 / n1 - errors2 / n2) / se : 0
}

function rate(x: number): string {
  return String(Number(x.toFixed(4)))
}

function ms(x: number): string {
  return `${x.toFixed(1)} ms`
}
