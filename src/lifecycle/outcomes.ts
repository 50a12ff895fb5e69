import { VersionWindow } from '../analysis/version-window.js'
import type { OutlierDetector } from '../health/outlier.js'
import type { Metrics } from '../metrics/metrics.js'
import { isError, type OutcomeSink } from '../proxy/outcome.js'
import type { Instance, Version } from '../routing/instance.js'

export interface WindowOptions {
  windowMs: number
  sliceMs: number
  now: () => number
}

/**
 * The data path's one subscriber: fans each request's outcome out to the
 * metrics, the version's analysis window and outlier detection. Everything
 * it touches is indexed by `version.index`: no maps, no label objects.
 */
export class Outcomes implements OutcomeSink {
  readonly #windows: (VersionWindow | undefined)[] = []

  constructor(
    readonly metrics: Metrics,
    readonly outlier: OutlierDetector,
    readonly windowOptions: WindowOptions,
  ) {}

  window(version: Version): VersionWindow {
    let w = this.#windows[version.index]
    if (w === undefined) w = this.#windows[version.index] = new VersionWindow(this.windowOptions)
    return w
  }

  end(instance: Instance, status: number, latencyMs: number, failed: boolean): void {
    const version = instance.version
    const error = isError(status, failed)
    version.requestsTotal++
    if (error) version.errorsTotal++
    this.metrics.record(version, status, latencyMs / 1000)
    this.window(version).record(error, latencyMs)
    this.outlier.observe(instance, error)
  }

  tryFailed(instance: Instance): void {
    this.metrics.recordRetry(instance.version)
    this.outlier.observe(instance, true)
  }

  unrouted(status: number): void {
    this.metrics.recordUnrouted(status)
  }

  /** Moves every window to now (the analysis timer calls this once per interval). */
  tick(now: number): void {
    for (const w of this.#windows) w?.tick(now)
  }
}
