import type { SparseCounts } from '../analysis/histogram.js'
import type { SliceSnapshot } from '../analysis/slices.js'
import type { Config } from '../config/load.js'
import type { Discovered } from '../discovery/membership.js'
import type { MismatchEntry } from '../mirror/mismatch-log.js'
import type { DesiredState } from '../state/types.js'

/**
 * What crosses between the primary and its workers (README "Workers and
 * self-upgrade"), as plain data over the cluster IPC channel. The primary
 * owns the state; a worker owns its connections and reports what it saw.
 */

/** Everything a worker's routing table is a function of, sent after every change the primary applies. */
export interface StateMessage {
  t: 'state'
  /** Acknowledged by the worker once applied (`AckMessage`). */
  seq: number
  config: Config
  desired: DesiredState
  discovered: Record<string, Discovered>
  /**
   * Per instance: [url, healthy, probed, usableSince, ejectedUntil]: active
   * health, slow start's ramp, and the outlier ejections the primary
   * recorded for the whole proxy (0: none).
   */
  health: InstanceFacts[]
}

export type InstanceFacts = [url: string, healthy: boolean, probed: boolean, usableSince: number, ejectedUntil: number]

export type ToWorker =
  | StateMessage
  /** drain.delayMs began: responses carry `Connection: close`. */
  | { t: 'stopping' }
  /** Graceful stop of the whole proxy: drain, WebSockets 1001, exit 0. */
  | { t: 'stop' }
  /** Self-upgrade: a newer worker serves; stop accepting, finish, keep WebSockets until they end or drain.timeoutMs. */
  | { t: 'retire' }
  | { t: 'metrics'; id: number }
  /** The worker's ejection of this instance would pass the proxy-wide limit: it takes it back. */
  | { t: 'reinstate'; url: string }

/** A worker's figures every analysis interval. */
export interface ReportMessage {
  t: 'report'
  /** Analysis window slices by version name. */
  slices: Record<string, SliceSnapshot[]>
  /** Per version: [requestsTotal, errorsTotal, inflight, websockets]. */
  versions: Record<string, [number, number, number, number]>
  /**
   * Per instance: [url, inflight, websockets, requests, failures]; the last
   * two since the previous report (the outlier peer sweep's counts).
   */
  instances: [string, number, number, number, number][]
  /** The mirror run's figures, when this worker mirrors. */
  mirror?: MirrorReport
  /** Mismatches recorded since the previous report (at most the mismatch log's size). */
  mismatches?: MismatchEntry[]
}

/** A worker's mirroring figures: its run's totals, and its counts since a rollout's mirror phase began. */
export interface MirrorReport {
  totals: { copied: number; dropped: number; matched: number; mismatches: number; errors: number; uncompared: number }
  shadow: SparseCounts
  primary: SparseCounts
  phase?: { fromMs: number; judged: number; bad: number; shadow: SparseCounts; primary: SparseCounts }
}

export type FromWorker =
  /** Listening on the IPC channel: the primary answers with the state (nothing sent earlier can be relied on). */
  | { t: 'hello' }
  | { t: 'serving'; port: number }
  | { t: 'ack'; seq: number }
  /** The worker ejected an instance on its own traffic (it already avoids it): the primary decides for the proxy. */
  | { t: 'ejected'; url: string; until: number; why: Record<string, unknown> }
  | ReportMessage
  | { t: 'metrics'; id: number; json: unknown }
  /** Counters as the worker leaves, so /metrics never goes down. */
  | { t: 'final'; json: unknown; report: ReportMessage }

export function isFromWorker(m: unknown): m is FromWorker {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
