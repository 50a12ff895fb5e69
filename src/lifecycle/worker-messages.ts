import type { SparseCounts } from '../analysis/histogram.js'
import type { SliceSnapshot } from '../analysis/slices.js'
import type { Config } from '../config/load.js'
import type { Discovered } from '../discovery/membership.js'
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
  /** Active health per instance: [url, healthy, probed, usableSince] (usableSince: slow start's ramp). */
  health: [string, boolean, boolean, number][]
}

export type ToWorker =
  | StateMessage
  /** drain.delayMs began: responses carry `Connection: close`. */
  | { t: 'stopping' }
  /** Graceful stop of the whole proxy: drain, WebSockets 1001, exit 0. */
  | { t: 'stop' }
  /** Self-upgrade: a newer worker serves; stop accepting, finish, keep WebSockets until they end or drain.timeoutMs. */
  | { t: 'retire' }
  | { t: 'metrics'; id: number }

/** A worker's figures every analysis interval. */
export interface ReportMessage {
  t: 'report'
  /** Analysis window slices by version name. */
  slices: Record<string, SliceSnapshot[]>
  /** Per version: [requestsTotal, errorsTotal, inflight, websockets]. */
  versions: Record<string, [number, number, number, number]>
  /** Per instance: [url, inflight, websockets]. */
  instances: [string, number, number][]
  /** The mirror run's figures, when this worker mirrors. */
  mirror?: MirrorReport
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
  | ReportMessage
  | { t: 'metrics'; id: number; json: unknown }
  /** Counters as the worker leaves, so /metrics never goes down. */
  | { t: 'final'; json: unknown; report: ReportMessage }

export function isFromWorker(m: unknown): m is FromWorker {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
