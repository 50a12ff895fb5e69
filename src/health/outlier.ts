import type { Logger } from 'pino'
import type { Instance, Version } from '../routing/instance.js'
import { type PeerOptions, peerOutliers } from './peer-outliers.js'

export interface OutlierOptions {
  consecutiveFailures: number
  ejectionMs: number
  /** Most of a version's instances ejected at once, percent (at least one when it has two or more). */
  maxEjectionPercent: number
  /** The second signal: an instance failing clearly more than its version's other instances (absent: off). */
  peers?: PeerOptions | undefined
}

export interface OutlierEvents {
  /** An instance was ejected or came back: the owner rebuilds the routing table. */
  onChange(instance: Instance): void
  /** Counted once per ejection (the metrics). */
  onEjected?(instance: Instance): void
}

/** A worker's ejection, told to its primary: which instance, until when, and why (the log's fields). */
export type EjectionReport = (instance: Instance, until: number, why: Record<string, unknown>) => void

/**
 * Passive ejection from live traffic: `consecutiveFailures` connect errors,
 * resets, timeouts or 5xx in a row eject an instance for `ejectionMs`, after
 * which it takes traffic again.
 *
 * Ejection works inside a version (README "Outlier ejection"): it never
 * ejects a version's last usable instance and never more than
 * `maxEjectionPercent` of its instances, so it can never empty a version and
 * pass its share to the others. A fault that hits every instance alike (a
 * shared dependency down) leaves the split as the weights say; only probes
 * and drains can take a version out of the split. Envoy bounds the same
 * mechanism with max_ejection_percent per cluster; here a version plays the
 * cluster's part, because versions are what the weights divide.
 *
 * With `peers`, a sweep every `peers.intervalMs` also ejects an instance
 * that failed clearly more than its version's other instances (see
 * peer-outliers.ts), under the same limits.
 *
 * With workers (README "Workers and self-upgrade") the primary's detector
 * decides for the whole proxy, as Envoy's main thread does for its worker
 * threads: a worker's detector (`followPrimary`) still ejects at once on
 * its own traffic, so a failing instance is avoided without waiting on the
 * primary, but only provisionally: it reports the ejection, the primary
 * `confirm`s it under the proxy-wide limits (or the worker must
 * `reinstate` it), records it (log, metrics, /v1/state) and sends it to
 * every worker with the state (`follow`). The peer sweep runs in the
 * primary only, on the counts the workers report.
 */
export class OutlierDetector {
  /** Ejections this detector ends itself (in a worker: its provisional ones, until the primary takes them over). */
  readonly #timers = new Map<Instance, NodeJS.Timeout>()
  #sweep: NodeJS.Timeout | undefined
  /** Set in a worker: where its ejections go. */
  #report: EjectionReport | undefined

  constructor(
    readonly opts: OutlierOptions,
    readonly log: Logger,
    readonly events: OutlierEvents,
    /** The versions the peer sweep looks at. */
    readonly versions: () => readonly Version[] = () => [],
  ) {
    if (opts.peers) {
      this.#sweep = setInterval(() => this.sweep(), opts.peers.intervalMs)
      this.#sweep.unref()
    }
  }

  /** Hot path: increments, one compare and a store. */
  observe(instance: Instance, failed: boolean): void {
    instance.windowRequests++
    if (!failed) {
      if (instance.consecutiveFailures !== 0) instance.consecutiveFailures = 0
      return
    }
    instance.windowFailures++
    const limit = this.opts.consecutiveFailures
    if (limit === 0) return
    if (++instance.consecutiveFailures < limit || instance.ejectedUntil !== 0) return
    if (!this.#mayEject(instance)) return
    this.#eject(instance, { mode: 'consecutive', failures: instance.consecutiveFailures })
  }

  /**
   * The peer comparison of the interval just ended, then a fresh interval.
   * Runs on its own timer with `peers`; public for tests.
   */
  sweep(): void {
    const peers = this.opts.peers
    if (!peers) return
    for (const v of this.versions()) {
      for (const o of peerOutliers(v.instances, peers)) {
        if (!this.#mayEject(o.instance)) continue
        this.#eject(o.instance, {
          mode: 'peers',
          failureRate: round(o.rate),
          peersFailureRate: round(o.peersRate),
          requests: o.instance.windowRequests,
        })
      }
      for (const i of v.instances) {
        i.windowRequests = 0
        i.windowFailures = 0
      }
    }
  }

  /**
   * Makes this a worker's detector: its ejections are provisional and go to
   * `report`; the peer sweep is the primary's (on every worker's counts).
   */
  followPrimary(report: EjectionReport): void {
    this.#report = report
    clearInterval(this.#sweep)
    this.#sweep = undefined
  }

  /**
   * In the primary: an ejection a worker made (`until` is its deadline, the
   * same clock), judged against the proxy-wide limits. Recorded like one of
   * its own when they allow it; false when they do not (another worker's
   * ejection came first), and the worker takes it back.
   */
  confirm(instance: Instance, until: number, why: Record<string, unknown>): boolean {
    // Already ejected (another worker was first) or already over: the state the workers have says what holds.
    if (instance.ejectedUntil !== 0 || until <= Date.now()) return true
    if (!this.#mayEject(instance)) {
      this.log.info(
        { instance: instance.url, version: instance.version.name, ...why },
        "a worker's ejection is refused: the version is at its ejection limit",
      )
      return false
    }
    this.#eject(instance, why, until)
    return true
  }

  /**
   * In a worker: the primary's ejection of `instance` as its latest state
   * says (`until`, 0 for none). An ejection of the worker's own that the
   * primary has not heard of yet stays. True when anything changed (the
   * caller rebuilds the table).
   */
  follow(instance: Instance, until: number): boolean {
    if (until !== 0) {
      // The primary's now: it ends it (a later state), not a timer here.
      clearTimeout(this.#timers.get(instance))
      this.#timers.delete(instance)
      if (instance.ejectedUntil === until) return false
      instance.ejectedUntil = until
      return true
    }
    if (instance.ejectedUntil === 0 || this.#timers.has(instance)) return false
    instance.ejectedUntil = 0
    instance.consecutiveFailures = 0
    return true
  }

  /** In a worker: the primary refused this worker's ejection of `instance` (the proxy-wide limit was reached). */
  reinstate(instance: Instance): void {
    const t = this.#timers.get(instance)
    if (t === undefined) return
    clearTimeout(t)
    this.#timers.delete(instance)
    instance.ejectedUntil = 0
    this.log.debug({ instance: instance.url, version: instance.version.name }, 'ejection refused by the primary: reinstated')
    this.events.onChange(instance)
  }

  #eject(instance: Instance, why: Record<string, unknown>, until = Date.now() + this.opts.ejectionMs): void {
    instance.ejectedUntil = until
    const fields = { instance: instance.url, version: instance.version.name, ...why, until: new Date(until).toISOString() }
    // A worker's ejection is logged and counted once, by the primary that records it.
    if (this.#report) this.log.debug(fields, "ejected on this worker's traffic: reported to the primary")
    else this.log.warn(fields, 'instance ejected')
    const t = setTimeout(() => this.#readmit(instance, 'instance back from ejection'), until - Date.now())
    t.unref()
    this.#timers.set(instance, t)
    if (this.#report) this.#report(instance, until, why)
    else this.events.onEjected?.(instance)
    this.events.onChange(instance)
  }

  /** The ejection budget of one version: the cap, and never its last usable instance. */
  #mayEject(instance: Instance): boolean {
    const all = instance.version.instances
    let ejected = 0
    let otherUsable = false
    for (const i of all) {
      if (i.ejectedUntil !== 0) ejected++
      else if (i !== instance && i.usable) otherUsable = true
    }
    return otherUsable && ejected < ejectionCap(all.length, this.opts.maxEjectionPercent)
  }

  /**
   * Keeps "never eject a version's last usable instance" true after the
   * ejection: when probes or drains have since left a version with nothing
   * else usable, its ejected instances that are healthy and not draining
   * serve again at once (the version keeps its share; an instance that is
   * merely failing beats passing the version's users to another version).
   * The owner calls it before each routing table rebuild. Returns whether it
   * readmitted any (no onChange call: the caller is rebuilding anyway).
   */
  failOpen(): boolean {
    if (this.#timers.size === 0) return false
    let readmitted = false
    for (const v of versionsOf(this.#timers.keys())) {
      if (v.draining || v.instances.some((i) => i.usable)) continue
      for (const i of v.instances) {
        if (i.ejectedUntil === 0 || !i.healthy || i.draining) continue
        this.#readmit(i, 'ejection ended early: no other instance of its version is usable', false)
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
    this.log[this.#report ? 'debug' : 'info']({ instance: instance.url, version: instance.version.name }, msg)
    if (notify) this.events.onChange(instance)
  }

  stop(): void {
    clearInterval(this.#sweep)
    for (const t of this.#timers.values()) clearTimeout(t)
    this.#timers.clear()
  }
}

/**
 * How many of a version's `count` instances may be ejected at once: the
 * percent rounded down, but at least one when there are two or more (a lone
 * instance is its version's last one and never ejected anyway).
 */
export function ejectionCap(count: number, maxPercent: number): number {
  if (count < 2) return 0
  return Math.max(1, Math.floor((count * maxPercent) / 100))
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000
}

function versionsOf(instances: Iterable<Instance>): Set<Version> {
  const out = new Set<Version>()
  for (const i of instances) out.add(i.version)
  return out
}
