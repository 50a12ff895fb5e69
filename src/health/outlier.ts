import type { Logger } from 'pino'
import type { Instance, Version } from '../routing/instance.js'

export interface OutlierOptions {
  consecutiveFailures: number
  ejectionMs: number
}

/**
 * Passive ejection from live traffic: `consecutiveFailures` connect errors,
 * resets, timeouts or 5xx in a row eject an instance for `ejectionMs`, after
 * which it takes traffic again. The last usable instance of all versions is
 * never ejected (fail open, like Envoy's max ejection percent): a struggling
 * instance beats a certain 503.
 */
export class OutlierDetector {
  readonly #timers = new Map<Instance, NodeJS.Timeout>()

  constructor(
    readonly opts: OutlierOptions,
    readonly versions: () => readonly Version[],
    readonly log: Logger,
    readonly onChange: (instance: Instance) => void,
    /** Current weights: ejection never leaves the weighted versions without a usable instance. */
    readonly weights: () => Readonly<Record<string, number>> = () => ({}),
  ) {}

  /** Hot path: one compare and an increment or a store. */
  observe(instance: Instance, failed: boolean): void {
    if (!failed) {
      if (instance.consecutiveFailures !== 0) instance.consecutiveFailures = 0
      return
    }
    const limit = this.opts.consecutiveFailures
    if (limit === 0) return
    if (++instance.consecutiveFailures < limit || instance.ejectedUntil !== 0) return
    if (!this.#othersUsable(instance)) return
    instance.ejectedUntil = Date.now() + this.opts.ejectionMs
    this.log.warn(
      { instance: instance.url, version: instance.version.name, failures: instance.consecutiveFailures },
      'instance ejected',
    )
    const t = setTimeout(() => this.#readmit(instance, 'instance back from ejection'), this.opts.ejectionMs)
    t.unref()
    this.#timers.set(instance, t)
    this.onChange(instance)
  }

  /**
   * Keeps "never eject the last usable instance" true after the ejection:
   * when probes or drains have since taken every other instance away, the
   * ejected ones that are healthy and not draining serve again at once.
   * The owner calls it before each routing table rebuild. Returns whether it
   * readmitted any (no onChange call: the caller is rebuilding anyway).
   */
  failOpen(): boolean {
    if (this.#timers.size === 0) return false
    const versions = this.#weighted()
    for (const v of versions) for (const i of v.instances) if (i.usable) return false
    let readmitted = false
    for (const v of versions) {
      for (const i of v.instances) {
        if (i.ejectedUntil === 0 || !i.healthy || i.draining || v.draining) continue
        this.#readmit(i, 'ejection ended early: no other instance is usable', false)
        readmitted = true
      }
    }
    return readmitted
  }

  #readmit(instance: Instance, msg: string, notify = true): void {
    clearTimeout(this.#timers.get(instance))
    this.#timers.delete(instance)
    instance.ejectedUntil = 0
    instance.consecutiveFailures = 0
    instance.usableSince = Date.now()
    this.log.info({ instance: instance.url, version: instance.version.name }, msg)
    if (notify) this.onChange(instance)
  }

  /**
   * Whether traffic has somewhere to go without this instance. Only versions
   * with weight count: ejecting blue's last instance must not push users onto
   * a zero-weight green that was never meant to serve them.
   */
  #othersUsable(instance: Instance): boolean {
    for (const v of this.#weighted()) for (const i of v.instances) if (i !== instance && i.usable) return true
    return false
  }

  /** Versions with weight, or all of them when none has (weights unknown). */
  #weighted(): readonly Version[] {
    const w = this.weights()
    const all = this.versions()
    const weighted = all.filter((v) => (w[v.name] ?? 0) > 0)
    return weighted.length > 0 ? weighted : all
  }

  stop(): void {
    for (const t of this.#timers.values()) clearTimeout(t)
    this.#timers.clear()
  }
}
