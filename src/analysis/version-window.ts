import { figuresOf, type WindowFigures } from './figures.js'
import { BUCKETS, bucketIndex, toSparse } from './histogram.js'
import type { SliceSnapshot } from './slices.js'

export interface VersionWindowOptions {
  /** Length of the sliding window (`analysis.windowMs`). */
  windowMs: number
  /** Length of one slice; `analysis.intervalMs` is the natural choice. */
  sliceMs: number
  /** Injected clock, read on `tick()` and `figures()`, never on `record()`. */
  now: () => number
}

/**
 * The sliding window of one version: a ring of `floor(windowMs / sliceMs)`
 * slices, each with request and error counts and a latency histogram, plus
 * running totals of the whole window.
 *
 * `record()` is the data path's call: a handful of array increments into
 * the current slice and the totals, no clock, no allocation. Time moves only
 * in `tick()` (the caller's interval timer, and `figures()`): slices whose
 * start is `windowMs` or more behind the current slice's start fall out and
 * are subtracted from the totals. Reading the figures therefore never merges
 * slices; it walks the 704 buckets of the totals once.
 *
 * Slices are aligned on multiples of `sliceMs` since the epoch so that
 * several proxies' slices line up for `mergeSlices`. With windowMs a
 * multiple of sliceMs, a sample recorded at t leaves the window at the latest
 * at t + windowMs and is still in it at t + windowMs - sliceMs (otherwise the
 * window is the largest multiple of sliceMs below windowMs).
 */
export class VersionWindow {
  readonly windowMs: number
  readonly sliceMs: number
  readonly #now: () => number
  readonly #slots: number
  readonly #requests: Uint32Array
  readonly #errors: Uint32Array
  readonly #latency: Uint32Array
  readonly #totalLatency = new Uint32Array(BUCKETS)
  #totalRequests = 0
  #totalErrors = 0
  #cur = 0
  #curOffset = 0
  #curStart: number
  #curEnd: number
  /** When the window began: until windowMs after it, the figures cover less than windowMs. */
  readonly #since: number

  constructor(opts: VersionWindowOptions) {
    if (!(opts.sliceMs > 0) || !(opts.windowMs >= opts.sliceMs)) {
      throw new RangeError(`windowMs (${opts.windowMs}) must be >= sliceMs (${opts.sliceMs}) > 0`)
    }
    this.windowMs = opts.windowMs
    this.sliceMs = opts.sliceMs
    this.#now = opts.now
    this.#slots = Math.floor(opts.windowMs / opts.sliceMs)
    this.#requests = new Uint32Array(this.#slots)
    this.#errors = new Uint32Array(this.#slots)
    this.#latency = new Uint32Array(this.#slots * BUCKETS)
    this.#since = opts.now()
    this.#curStart = this.#alignedStart(this.#since)
    this.#curEnd = this.#curStart + this.sliceMs
  }

  /** Records one outcome in the current slice. An error is a 5xx or a request that got no response. */
  record(isError: boolean, latencyMs: number): void {
    const b = bucketIndex(latencyMs)
    this.#requests[this.#cur]!++
    this.#latency[this.#curOffset + b]!++
    this.#totalLatency[b]!++
    this.#totalRequests++
    if (isError) {
      this.#errors[this.#cur]!++
      this.#totalErrors++
    }
  }

  /** Moves the window to `now`: slices that left it are dropped from the totals. */
  tick(now: number = this.#now()): void {
    if (now < this.#curEnd) return
    const start = this.#alignedStart(now)
    const steps = (start - this.#curStart) / this.sliceMs
    if (steps >= this.#slots) {
      this.#clear()
    } else {
      for (let k = 1; k <= steps; k++) this.#evict((this.#cur + k) % this.#slots)
    }
    this.#cur = (this.#cur + steps) % this.#slots
    this.#curOffset = this.#cur * BUCKETS
    this.#curStart = start
    this.#curEnd = start + this.sliceMs
  }

  /** Start of the slice `record()` writes into; every slice before it is complete. */
  get currentSliceStart(): number {
    return this.#curStart
  }

  /** The window's figures as of the clock's now. */
  figures(): WindowFigures {
    this.tick()
    return figuresOf(this.#totalRequests, this.#totalErrors, this.#totalLatency)
  }

  /**
   * How much time the figures cover: the complete slices in the window and
   * the current one so far, and never more than the window has existed. A
   * rate is the requests over this.
   */
  coveredMs(now: number = this.#now()): number {
    this.tick(now)
    return Math.max(0, Math.min(now - this.#since, (this.#slots - 1) * this.sliceMs + (now - this.#curStart)))
  }

  /**
   * The non-empty slices in the window, oldest first, the current (partial)
   * one included: a publisher sends the whole list each interval and a
   * reader replaces that publisher's previous list with it.
   */
  exportSlices(): SliceSnapshot[] {
    this.tick()
    const out: SliceSnapshot[] = []
    for (let age = this.#slots - 1; age >= 0; age--) {
      const slot = (this.#cur - age + this.#slots) % this.#slots
      if (this.#requests[slot] === 0) continue
      out.push({
        startMs: this.#curStart - age * this.sliceMs,
        requests: this.#requests[slot]!,
        errors: this.#errors[slot]!,
        latency: toSparse(this.#latency, slot * BUCKETS),
      })
    }
    return out
  }

  #alignedStart(now: number): number {
    return Math.floor(now / this.sliceMs) * this.sliceMs
  }

  #evict(slot: number): void {
    if (this.#requests[slot] === 0) return
    const off = slot * BUCKETS
    for (let i = 0; i < BUCKETS; i++) this.#totalLatency[i]! -= this.#latency[off + i]!
    this.#latency.fill(0, off, off + BUCKETS)
    this.#totalRequests -= this.#requests[slot]!
    this.#totalErrors -= this.#errors[slot]!
    this.#requests[slot] = 0
    this.#errors[slot] = 0
  }

  #clear(): void {
    this.#latency.fill(0)
    this.#totalLatency.fill(0)
    this.#requests.fill(0)
    this.#errors.fill(0)
    this.#totalRequests = 0
    this.#totalErrors = 0
  }
}
