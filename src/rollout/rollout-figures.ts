import { LatencyHistogram, type SparseCounts } from '../analysis/histogram.js'
import type { SliceSnapshot } from '../analysis/slices.js'

/** One version's totals over a rollout, as plain data. */
export interface VersionTotals {
  requests: number
  errors: number
  /** Latency histogram, sparse (see histogram.ts). */
  latency: SparseCounts
}

/**
 * Figures of baseline and canary over a whole rollout, as plain data so
 * they are stored beside the rollout state and carried on by whichever
 * proxy drives it next.
 *
 * Fed once per interval with the window slices (merged over the proxies,
 * or one proxy's own `exportSlices()`): only complete slices that start at
 * or after `fedUntilMs` are added, and `fedUntilMs` then moves on, so each
 * slice counts once however often it is offered. The driver starts the
 * figures at the start of the slice in progress when the rollout began (see
 * its `#sliceStart`); when the rollout ends, a last feed with
 * `completedBeforeMs = Infinity` takes in the slice in progress.
 */
export interface RolloutFigures {
  fedUntilMs: number
  baseline: VersionTotals
  canary: VersionTotals
}

export function startFigures(startedAt: number): RolloutFigures {
  return {
    fedUntilMs: startedAt,
    baseline: { requests: 0, errors: 0, latency: [] },
    canary: { requests: 0, errors: 0, latency: [] },
  }
}

/**
 * Adds the slices that completed since the last feed. `completedBeforeMs`
 * is the start of the slice in progress (`VersionWindow.currentSliceStart`).
 */
export function feedFigures(
  figures: RolloutFigures,
  baselineSlices: readonly SliceSnapshot[],
  canarySlices: readonly SliceSnapshot[],
  completedBeforeMs: number,
): RolloutFigures {
  if (completedBeforeMs <= figures.fedUntilMs) return figures
  return {
    fedUntilMs: completedBeforeMs,
    baseline: addSlices(figures.baseline, baselineSlices, figures.fedUntilMs, completedBeforeMs),
    canary: addSlices(figures.canary, canarySlices, figures.fedUntilMs, completedBeforeMs),
  }
}

function addSlices(
  totals: VersionTotals,
  slices: readonly SliceSnapshot[],
  from: number,
  before: number,
): VersionTotals {
  let requests = totals.requests
  let errors = totals.errors
  let histogram: LatencyHistogram | undefined
  for (const s of slices) {
    if (s.startMs < from || s.startMs >= before) continue
    requests += s.requests
    errors += s.errors
    histogram ??= LatencyHistogram.fromSparse(totals.latency)
    histogram.addSparse(s.latency)
  }
  return histogram ? { requests, errors, latency: histogram.toSparse() } : totals
}

export interface TotalsSummary {
  requests: number
  errors: number
  errorRate: number
  p95Ms: number
}

/** Requests, error rate and p95 of one version's totals. */
export function summarize(totals: VersionTotals): TotalsSummary {
  return {
    requests: totals.requests,
    errors: totals.errors,
    errorRate: totals.requests > 0 ? totals.errors / totals.requests : 0,
    p95Ms: LatencyHistogram.fromSparse(totals.latency).quantile(0.95),
  }
}
