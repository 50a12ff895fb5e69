import { BUCKETS, quantileMs } from './histogram.js'

/** What a window says about one version: the numbers the verdict and `/v1/state` read. */
export interface WindowFigures {
  requests: number
  errors: number
  /** errors / requests, 0 without requests. */
  errorRate: number
  /** Latency quantiles in ms, 0 without requests. */
  p50Ms: number
  p95Ms: number
  p99Ms: number
}

/** Figures of `requests` and `errors` counts and the histogram at `counts[offset ..]`. */
export function figuresOf(requests: number, errors: number, counts: ArrayLike<number>, offset = 0): WindowFigures {
  let total = 0
  for (let i = 0; i < BUCKETS; i++) total += counts[offset + i]!
  return {
    requests,
    errors,
    errorRate: requests > 0 ? errors / requests : 0,
    p50Ms: quantileMs(counts, offset, total, 0.5),
    p95Ms: quantileMs(counts, offset, total, 0.95),
    p99Ms: quantileMs(counts, offset, total, 0.99),
  }
}
