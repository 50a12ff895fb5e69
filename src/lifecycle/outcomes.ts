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

  /** analysis.grpcErrorCodes as a lookup by code (0..16). */
  readonly #grpcErrors = new Uint8Array(17)

  constructor(
    readonly metrics: Metrics,
    readonly outlier: OutlierDetector,
    readonly windowOptions: WindowOptions,
    grpcErrorCodes: readonly number[] = [],
  ) {
    for (const code of grpcErrorCodes) this.#grpcErrors[code] = 1
  }

  window(version: Version): VersionWindow {
    let w = this.#windows[version.index]
    if (w === undefined) w = this.#windows[version.index] = new VersionWindow(this.windowOptions)
    return w
  }

  end(instance: Instance, status: number, latencyMs: number, failed: boolean, grpcStatus = -1): void {
    const version = instance.version
    // README "gRPC": a call whose grpc-status is one of analysis.grpcErrorCodes failed, whatever its HTTP status.
    const error = isError(status, failed) || (grpcStatus >= 0 && this.#grpcErrors[grpcStatus] === 1)
    version.requestsTotal++
    if (error) version.errorsTotal++
    if (grpcStatus >= 0) this.metrics.recordGrpc(version, status, grpcStatus)
    this.metrics.record(version, status, latencyMs / 1000, grpcStatus >= 0)
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
