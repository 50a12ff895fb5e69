import type { Metrics } from '../metrics/metrics.js'
import { MirrorSampler } from './mirror-sampler.js'
import type { MirrorSettings } from './mirror-settings.js'
import { type MirrorOutcome, MirrorStats } from './mirror-stats.js'

type CounterChild = { inc(n?: number): void }

/**
 * One mirroring run: the same settings since it began. It owns its sampler,
 * its figures and its metric children, so copies still in flight when the
 * settings change settle into the run they belong to, never the next one.
 */
export class MirrorRun {
  readonly sampler: MirrorSampler
  readonly stats: MirrorStats
  readonly #counters: Record<MirrorOutcome | 'dropped', CounterChild>

  constructor(
    readonly settings: MirrorSettings,
    metrics: Metrics,
    now: () => number,
  ) {
    this.sampler = new MirrorSampler(settings.percent)
    this.stats = new MirrorStats({ now })
    const c = (outcome: string) => metrics.mirrorRequests.labels(settings.version, outcome)
    this.#counters = {
      match: c('match'),
      mismatch: c('mismatch'),
      error: c('error'),
      uncompared: c('uncompared'),
      dropped: c('dropped'),
    }
  }

  /** A chosen request that is not copied: over maxInflight, or its body is over maxBodyBytes. */
  drop(): void {
    this.stats.dropped++
    this.#counters.dropped.inc()
  }

  settle(outcome: MirrorOutcome, shadowMs: number | undefined, primaryMs: number | undefined): void {
    this.stats.settle(outcome, shadowMs, primaryMs)
    this.#counters[outcome].inc()
  }
}
