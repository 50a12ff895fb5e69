import { addSparse, BUCKETS, bucketIndex, LatencyHistogram, quantileMs, type SparseCounts, toSparse } from '../analysis/histogram.js'
import type { MirrorFigures } from '../rollout/rollout-machine.js'

/**
 * How a copy ended. `uncompared`: the shadow answered but there was nothing
 * to compare it with (compare is off, or the user's response was cut short).
 */
export type MirrorOutcome = 'match' | 'mismatch' | 'error' | 'uncompared'

/** The figures of one mirroring run (the same settings since `since`), for /v1/state. */
export interface MirrorTotals {
  /** Epoch ms the run began. */
  since: number
  /** Copies sent (or tried: a mirror version with nothing usable counts as an error). */
  copied: number
  matched: number
  mismatches: number
  errors: number
  uncompared: number
  /** Chosen but never sent: over maxInflight, or a request body over maxBodyBytes. */
  dropped: number
  shadowP95Ms: number | null
  primaryP95Ms: number | null
}

interface Slice {
  startMs: number
  matched: number
  mismatches: number
  errors: number
  shadow: SparseCounts
  primary: SparseCounts
}

export interface MirrorStatsOptions {
  now: () => number
  /** Granularity of `figuresSince`. */
  sliceMs?: number
  /** History kept for `figuresSince` (older slices are dropped; the run totals stay exact). */
  maxSlices?: number
}

/**
 * The counters and latency histograms of one mirroring run: totals since
 * the run began, plus time slices so the rollout's mirror phase can ask for
 * the figures since any moment (the phase's start). Settled copies land in
 * the current slice; a closed slice is kept as sparse counts, so an hour of
 * one-second slices costs a few hundred kB at most.
 */
export class MirrorStats {
  readonly since: number
  copied = 0
  dropped = 0
  matched = 0
  mismatches = 0
  errors = 0
  uncompared = 0
  readonly #now: () => number
  readonly #sliceMs: number
  readonly #maxSlices: number
  readonly #shadowTotal = new LatencyHistogram()
  readonly #primaryTotal = new LatencyHistogram()
  readonly #slices: Slice[] = []
  #cur: Slice
  readonly #curShadow = new Uint32Array(BUCKETS)
  readonly #curPrimary = new Uint32Array(BUCKETS)

  constructor(opts: MirrorStatsOptions) {
    this.#now = opts.now
    this.#sliceMs = opts.sliceMs ?? 1000
    this.#maxSlices = opts.maxSlices ?? 3600
    this.since = opts.now()
    this.#cur = this.#emptySlice(this.since)
  }

  /** A copy settled. Latencies are omitted when unknown (a refused shadow, a user's response cut short). */
  settle(outcome: MirrorOutcome, shadowMs: number | undefined, primaryMs: number | undefined): void {
    const cur = this.#slice()
    if (outcome === 'match') {
      this.matched++
      cur.matched++
    } else if (outcome === 'mismatch') {
      this.mismatches++
      cur.mismatches++
    } else if (outcome === 'error') {
      this.errors++
      cur.errors++
    } else this.uncompared++
    if (shadowMs !== undefined) {
      this.#shadowTotal.record(shadowMs)
      this.#curShadow[bucketIndex(shadowMs)]!++
    }
    if (primaryMs !== undefined) {
      this.#primaryTotal.record(primaryMs)
      this.#curPrimary[bucketIndex(primaryMs)]!++
    }
  }

  totals(): MirrorTotals {
    return {
      since: this.since,
      copied: this.copied,
      matched: this.matched,
      mismatches: this.mismatches,
      errors: this.errors,
      uncompared: this.uncompared,
      dropped: this.dropped,
      shadowP95Ms: p95(this.#shadowTotal.counts, this.#shadowTotal.total),
      primaryP95Ms: p95(this.#primaryTotal.counts, this.#primaryTotal.total),
    }
  }

  /**
   * What the rollout's mirror phase is judged on, counted since `fromMs`
   * (to the slice: the slice holding `fromMs` counts whole). `copied` is the
   * copies judged (matched, mismatched or failed) and a shadow error counts
   * as a mismatch: a candidate that cannot answer must not pass.
   */
  figuresSince(fromMs: number): MirrorFigures {
    if (fromMs <= this.since) {
      const t = this.totals()
      return {
        copied: t.matched + t.mismatches + t.errors,
        mismatches: t.mismatches + t.errors,
        shadowP95Ms: t.shadowP95Ms,
        primaryP95Ms: t.primaryP95Ms,
      }
    }
    const c = this.countsSince(fromMs)
    return mirrorFigures(c.judged, c.bad, c.shadow, c.primary)
  }

  /** The run's totals with their latency counts, as plain data (a worker's report to its primary). */
  totalCounts(): MirrorTotalCounts {
    return {
      copied: this.copied,
      dropped: this.dropped,
      matched: this.matched,
      mismatches: this.mismatches,
      errors: this.errors,
      uncompared: this.uncompared,
      shadow: this.#shadowTotal.counts,
      primary: this.#primaryTotal.counts,
    }
  }

  /** What `figuresSince` sums, before the percentiles: the counts since `fromMs` (to the slice). */
  countsSince(fromMs: number): MirrorCounts {
    if (fromMs <= this.since) {
      const t = this.totalCounts()
      return { judged: t.matched + t.mismatches + t.errors, bad: t.mismatches + t.errors, shadow: t.shadow, primary: t.primary }
    }
    const shadow = new Uint32Array(BUCKETS)
    const primary = new Uint32Array(BUCKETS)
    let judged = 0
    let bad = 0
    for (const s of this.#slices) {
      if (s.startMs + this.#sliceMs <= fromMs) continue
      judged += s.matched + s.mismatches + s.errors
      bad += s.mismatches + s.errors
      addSparse(shadow, 0, s.shadow)
      addSparse(primary, 0, s.primary)
    }
    const cur = this.#cur
    if (cur.startMs + this.#sliceMs > fromMs) {
      judged += cur.matched + cur.mismatches + cur.errors
      bad += cur.mismatches + cur.errors
      for (let i = 0; i < BUCKETS; i++) {
        shadow[i]! += this.#curShadow[i]!
        primary[i]! += this.#curPrimary[i]!
      }
    }
    return { judged, bad, shadow, primary }
  }

  /** The current slice, closing the previous one when its time is over. */
  #slice(): Slice {
    const now = this.#now()
    const cur = this.#cur
    if (now < cur.startMs + this.#sliceMs) return cur
    if (cur.matched + cur.mismatches + cur.errors > 0 || sum(this.#curShadow) + sum(this.#curPrimary) > 0) {
      cur.shadow = toSparse(this.#curShadow, 0)
      cur.primary = toSparse(this.#curPrimary, 0)
      this.#slices.push(cur)
      if (this.#slices.length > this.#maxSlices) this.#slices.shift()
    }
    this.#curShadow.fill(0)
    this.#curPrimary.fill(0)
    this.#cur = this.#emptySlice(now - (now % this.#sliceMs))
    return this.#cur
  }

  #emptySlice(startMs: number): Slice {
    return { startMs, matched: 0, mismatches: 0, errors: 0, shadow: [], primary: [] }
  }
}

/** A run's counters and total latency counts. */
export interface MirrorTotalCounts {
  copied: number
  dropped: number
  matched: number
  mismatches: number
  errors: number
  uncompared: number
  shadow: Uint32Array
  primary: Uint32Array
}

/** Copies judged (matched, mismatched, failed), the bad ones among them, and their latency counts. */
export interface MirrorCounts {
  judged: number
  bad: number
  shadow: Uint32Array
  primary: Uint32Array
}

/** A mirror phase's figures from its counts (one process's, or several summed). */
export function mirrorFigures(judged: number, bad: number, shadow: Uint32Array, primary: Uint32Array): MirrorFigures {
  return { copied: judged, mismatches: bad, shadowP95Ms: p95(shadow, sum(shadow)), primaryP95Ms: p95(primary, sum(primary)) }
}

/** The p95 of latency counts in ms, null when empty. */
export function countsP95(counts: Uint32Array): number | null {
  return p95(counts, sum(counts))
}

function sum(counts: Uint32Array): number {
  let t = 0
  for (let i = 0; i < counts.length; i++) t += counts[i]!
  return t
}

function p95(counts: Uint32Array, total: number): number | null {
  return total === 0 ? null : Math.round(quantileMs(counts, 0, total, 0.95) * 1000) / 1000
}
