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
  readonly #timers = new Set<NodeJS.Timeout>()

  constructor(
    readonly opts: OutlierOptions,
    readonly versions: () => readonly Version[],
    readonly log: Logger,
    readonly onChange: (instance: Instance) => void,
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
    const t = setTimeout(() => {
      this.#timers.delete(t)
      instance.ejectedUntil = 0
      instance.consecutiveFailures = 0
      instance.usableSince = Date.now()
      this.log.info({ instance: instance.url, version: instance.version.name }, 'instance back from ejection')
      this.onChange(instance)
    }, this.opts.ejectionMs)
    t.unref()
    this.#timers.add(t)
    this.onChange(instance)
  }

  #othersUsable(instance: Instance): boolean {
    for (const v of this.versions()) for (const i of v.instances) if (i !== instance && i.usable) return true
    return false
  }

  stop(): void {
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
  }
}
