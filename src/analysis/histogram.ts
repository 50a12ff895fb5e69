/**
 * Log-linear latency histogram (the HDR histogram layout, after Gil Tene's
 * HdrHistogram: https://hdrhistogram.github.io/HdrHistogram/).
 *
 * A latency is rounded to whole microseconds. Values below 64 µs get one
 * bucket per microsecond; above that, every power of two is cut into 32
 * equal buckets, so a bucket is never wider than 1/32 of its lower bound and
 * the value read back (the bucket's midpoint) is within ~1.6% of any value
 * that fell into it; at the 50 µs floor of interest the 1 µs rounding is
 * within 1%. The top bucket ends at 2^26 µs (~67 s); longer latencies are
 * clamped into it. 704 buckets in all, so one histogram is a 2.8 kB
 * Uint32Array and the index is found with a clz32 and a shift: no log, no
 * loop, no allocation.
 *
 * The functions work on a counts array plus an offset so one Uint32Array can
 * hold the histograms of every slice of a window.
 *
 * Hand-written rather than hdr-histogram-js (which the benches use): one flat
 * array for all slices merges and travels to other proxies as plain numbers.
 */

const SUB_BITS = 5
const SUB_COUNT = 1 << SUB_BITS // 32 buckets per power of two
const LINEAR_LIMIT = SUB_COUNT * 2 // values below 64 µs have a bucket each
const MAX_EXPONENT = 20
/** Largest microsecond value kept exactly; larger ones land in the top bucket. */
const MAX_US = (LINEAR_LIMIT << MAX_EXPONENT) - 1

/** Number of buckets in one histogram. */
export const BUCKETS = (MAX_EXPONENT + 2) * SUB_COUNT

/** Bucket index of a latency in milliseconds. NaN and negatives count as 0. */
export function bucketIndex(latencyMs: number): number {
  // `!(x > 0)` also catches NaN
  const us = !(latencyMs > 0) ? 0 : latencyMs >= MAX_US / 1000 ? MAX_US : (latencyMs * 1000 + 0.5) | 0
  const exponent = 31 - Math.clz32(us) - SUB_BITS
  return exponent <= 0 ? us : (exponent << SUB_BITS) + (us >>> exponent)
}

/** Lowest microsecond value of a bucket. */
function bucketLowUs(index: number): number {
  if (index < LINEAR_LIMIT) return index
  const exponent = (index >>> SUB_BITS) - 1
  return ((index & (SUB_COUNT - 1)) + SUB_COUNT) << exponent
}

/** The value a bucket stands for, in milliseconds: the midpoint of the integers it holds. */
export function bucketValueMs(index: number): number {
  const low = bucketLowUs(index)
  const width = index < LINEAR_LIMIT ? 1 : 1 << ((index >>> SUB_BITS) - 1)
  return (low + (width - 1) / 2) / 1000
}

/**
 * Nearest-rank quantile (the smallest value with at least q of the samples
 * at or below it) of the histogram at `counts[offset .. offset+BUCKETS)`
 * holding `total` samples. 0 for an empty histogram.
 */
export function quantileMs(counts: ArrayLike<number>, offset: number, total: number, q: number): number {
  if (total <= 0) return 0
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (let i = 0; i < BUCKETS; i++) {
    seen += counts[offset + i]!
    if (seen >= rank) return bucketValueMs(i)
  }
  return bucketValueMs(BUCKETS - 1)
}

/**
 * Sparse plain-data form of a histogram: `[index, count, index, count, ...]`
 * with ascending indexes and no zero counts. Small in JSON and in Redis.
 */
export type SparseCounts = number[]

export function toSparse(counts: ArrayLike<number>, offset: number): SparseCounts {
  const out: SparseCounts = []
  for (let i = 0; i < BUCKETS; i++) {
    const c = counts[offset + i]!
    if (c !== 0) out.push(i, c)
  }
  return out
}

/** Adds sparse counts into `counts` at `offset`; out-of-range indexes are ignored (untrusted input from peers). */
export function addSparse(counts: Uint32Array, offset: number, sparse: readonly number[]): void {
  for (let k = 0; k + 1 < sparse.length; k += 2) {
    const i = sparse[k]!
    const c = sparse[k + 1]!
    if (Number.isInteger(i) && i >= 0 && i < BUCKETS && c > 0) counts[offset + i]! += c
  }
}

/** One latency histogram: the unit the rollout figures and the tests use. */
export class LatencyHistogram {
  readonly counts = new Uint32Array(BUCKETS)
  total = 0

  record(latencyMs: number): void {
    this.counts[bucketIndex(latencyMs)]!++
    this.total++
  }

  addSparse(sparse: readonly number[]): void {
    addSparse(this.counts, 0, sparse)
    let t = 0
    for (let i = 0; i < BUCKETS; i++) t += this.counts[i]!
    this.total = t
  }

  quantile(q: number): number {
    return quantileMs(this.counts, 0, this.total, q)
  }

  toSparse(): SparseCounts {
    return toSparse(this.counts, 0)
  }

  static fromSparse(sparse: readonly number[]): LatencyHistogram {
    const h = new LatencyHistogram()
    h.addSparse(sparse)
    return h
  }
}
