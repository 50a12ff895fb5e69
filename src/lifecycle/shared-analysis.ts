import { mergeSlices, type SliceSnapshot } from '../analysis/slices.js'
import type { Config } from '../config/load.js'
import type { Version } from '../routing/instance.js'
import type { SliceExchange, StateStore } from '../state/store.js'
import type { Outcomes } from './outcomes.js'

/** What shared analysis needs of a proxy (the core has all of it). */
export interface AnalysisHost {
  readonly config: Pick<Config, 'analysis'>
  readonly versions: readonly Version[]
  readonly outcomes: Pick<Outcomes, 'window'>
  readonly store: SliceExchange & Pick<StateStore, 'id'>
}

/**
 * Several proxies judge a canary on all of their traffic: each publishes its
 * window slices to the shared store every analysis interval, and the rollout
 * driver (on the leader) merges its own fresh slices with the others' last
 * published ones. The others lag by at most one interval; slices are aligned
 * on the epoch, so the sum is what one proxy carrying all the traffic would
 * have recorded.
 */
export class SharedAnalysis {
  #timer: NodeJS.Timeout | undefined
  #publishing: Promise<void> = Promise.resolve()

  /**
   * `own` gives this proxy's slices when its traffic is not in its own
   * windows (a primary: its workers' slices, summed).
   */
  constructor(
    readonly sluice: AnalysisHost,
    readonly own?: (version: Version) => SliceSnapshot[],
  ) {}

  start(): void {
    const every = this.sluice.config.analysis.intervalMs
    this.#timer = setInterval(() => {
      this.#publishing = this.publish()
    }, every)
    this.#timer.unref()
  }

  /** This proxy's slices of every version, to the store. Never throws (the store swallows outages). */
  async publish(): Promise<void> {
    const byVersion: Record<string, SliceSnapshot[]> = {}
    const now = Date.now()
    for (const v of this.sluice.versions) {
      if (this.own) {
        byVersion[v.name] = this.own(v)
        continue
      }
      const w = this.sluice.outcomes.window(v)
      w.tick(now)
      byVersion[v.name] = w.exportSlices()
    }
    await this.sluice.store.publishSlices(this.sluice.store.id, byVersion)
  }

  /** The slices a version is judged on: this proxy's, fresh, plus every other live proxy's. */
  async slices(version: Version): Promise<SliceSnapshot[]> {
    const own = this.own ? this.own(version) : this.sluice.outcomes.window(version).exportSlices()
    const others = await this.sluice.store.readSlices(version.name, this.sluice.store.id)
    return others.length === 0 ? own : mergeSlices(own, ...others)
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#publishing
  }
}
