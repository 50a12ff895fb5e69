import { figuresOf, type WindowFigures } from './figures.js'
import { addSparse, BUCKETS, type SparseCounts, toSparse } from './histogram.js'

/**
 * One time slice of a version's window as plain data: what a proxy publishes
 * (to Redis, to a cluster primary) so the verdict can be computed on the sum
 * of every proxy's traffic. Slices are aligned on multiples of the slice
 * length since the epoch, so the same `startMs` means the same interval on
 * every proxy.
 */
export interface SliceSnapshot {
  startMs: number
  requests: number
  errors: number
  /** Latency histogram, sparse: `[bucketIndex, count, ...]` (see histogram.ts). */
  latency: SparseCounts
}

/**
 * Sums slice lists (one per proxy) slice by slice: slices with the same
 * `startMs` add up. The result is ordered by `startMs`.
 */
export function mergeSlices(...lists: readonly (readonly SliceSnapshot[])[]): SliceSnapshot[] {
  const byStart = new Map<number, { requests: number; errors: number; counts: Uint32Array }>()
  for (const list of lists) {
    for (const s of list) {
      let acc = byStart.get(s.startMs)
      if (acc === undefined) {
        acc = { requests: 0, errors: 0, counts: new Uint32Array(BUCKETS) }
        byStart.set(s.startMs, acc)
      }
      acc.requests += s.requests
      acc.errors += s.errors
      addSparse(acc.counts, 0, s.latency)
    }
  }
  return [...byStart.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([startMs, acc]) => ({
      startMs,
      requests: acc.requests,
      errors: acc.errors,
      latency: toSparse(acc.counts, 0),
    }))
}

/** Figures of the slices that start at or after `fromMs` (all of them by default). */
export function figuresFromSlices(slices: readonly SliceSnapshot[], fromMs = Number.NEGATIVE_INFINITY): WindowFigures {
  const counts = new Uint32Array(BUCKETS)
  let requests = 0
  let errors = 0
  for (const s of slices) {
    if (s.startMs < fromMs) continue
    requests += s.requests
    errors += s.errors
    addSparse(counts, 0, s.latency)
  }
  return figuresOf(requests, errors, counts)
}
