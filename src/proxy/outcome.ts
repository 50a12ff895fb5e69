import type { Instance } from '../routing/instance.js'

/**
 * Where the data path publishes what happened to each request: metrics,
 * analysis windows and outlier detection subscribe through one object, so
 * the data path imports none of them.
 */
export interface OutcomeSink {
  /**
   * A try on an instance ended. `status` is the status the client got from
   * this try (0: no response); `failed` marks a request that failed before
   * or during its response (reset, timeout, truncated body). `grpcStatus`:
   * a gRPC call's grpc-status (-1 or absent for other requests).
   */
  end(instance: Instance, status: number, latencyMs: number, failed: boolean, grpcStatus?: number): void
  /** A try that failed and will be retried elsewhere (outlier detection counts it). */
  tryFailed(instance: Instance, err: Error): void
  /** A request answered by the proxy itself without any instance (503 nothing usable). */
  unrouted(status: number): void
}

/** README "Canary analysis": an error is a 5xx (the proxy's own included) or a request that failed before any response. */
export function isError(status: number, failed: boolean): boolean {
  return failed || status >= 500
}
