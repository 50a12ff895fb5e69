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
 *   than `maxErrorRateIncrease`, with `confidence`: a one-sided z-test of
 *   "canary rate - baseline rate > maxErrorRateIncrease" (a non-inferiority
 *   margin, unpooled Wald variance). Testing against the margin, not mere
 *   equality, is what keeps a canary inside the limit from being rolled back
 *   by a few unlucky errors in a small sample (3 in 70 against none in 240
 *   is "significantly higher" than the baseline, but not significantly more
 *   than 2 points higher), which matters because the verdict is taken every
 *   interval on fresh samples. A real 10% error rate still crosses z = 2.33
 *   within about a hundred requests, 20% within about thirty. When the
 *   baseline fails as much, nothing is blamed on the canary.
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
  const z = excessZ(canary.errors, canary.requests, baseline.errors, baseline.requests, limits.maxErrorRateIncrease)
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
 * z statistic of "rate 1 exceeds rate 2 by more than `margin`", with the
 * unpooled (Wald) standard error. Without variance (every rate 0 or 1) the
 * difference is exact: +-Infinity on either side of the margin, 0 on it.
 */
export function excessZ(errors1: number, n1: number, errors2: number, n2: number, margin: number): number {
  const p1 = errors1 / n1
  const p2 = errors2 / n2
  const excess = p1 - p2 - margin
  const se = Math.sqrt((p1 * (1 - p1)) / n1 + (p2 * (1 - p2)) / n2)
  if (se > 0) return excess / se
  return excess === 0 ? 0 : excess > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY
}

function rate(x: number): string {
  return String(Number(x.toFixed(4)))
}

function ms(x: number): string {
  return `${x.toFixed(1)} ms`
}
