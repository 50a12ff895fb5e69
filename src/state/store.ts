import type { SliceSnapshot } from '../analysis/slices.js'
import type { AuditEntry, DesiredState } from './desired.js'

/** A finished or running rollout's record, for GET /v1/rollouts. Opaque to the store. */
export type RolloutRecord = Record<string, unknown> & { id: string }

/**
 * What a commit answers. `pending` means the shared store was unreachable:
 * the change is applied to this process and kept, and reconciled by
 * revision when the store returns (`warning` says so in words).
 */
export type CommitResult = { ok: true; pending?: boolean; warning?: string } | { ok: false; state: DesiredState }

/**
 * Where the desired state lives: in process (the default; kind `file` when
 * it is also kept in a state file) or in Redis (several proxies as one).
 * Asynchronous and message-shaped, so a cluster-local store fits beside
 * these. Every kind passes one contract test suite
 * (test/unit/state/store-contract.ts). One interface per concern below, so
 * a part that needs one concern (shared analysis: the slices) can say so.
 */
export interface StateStore extends DesiredStateStore, AuditLog, RolloutHistory, LeaderLease, SliceExchange {}

/** The desired state itself: loaded, read, committed by revision, and others' commits heard. */
export interface DesiredStateStore {
  readonly kind: 'memory' | 'file' | 'redis'
  /** Loads the shared state, seeding it with `seed` if the store is empty. */
  init(seed: DesiredState): Promise<DesiredState>
  /**
   * Set by `init` when the state came from this process's durable copy (the
   * state file) rather than the seed: the file and the revision loaded.
   */
  readonly restored?: { readonly from: string; readonly revision: number }
  /** The latest state this process knows (never blocks). */
  current(): DesiredState
  /**
   * Commits `next` if the stored revision is still `next.revision - 1`;
   * otherwise answers `{ ok: false, state }` with the newer state so the
   * caller can re-apply its change on top of it.
   */
  commit(next: DesiredState, entry: AuditEntry): Promise<CommitResult>
  /**
   * Another proxy's committed change, or a state that reconciliation after
   * an outage settled on (never called for a commit that answered ok).
   */
  onRemoteChange(listener: (state: DesiredState, entries: AuditEntry[]) => void): void
  /** Whether the shared store is reachable now (the memory store always is). */
  readonly up: boolean
  /** This process's name among the proxies sharing the store. */
  readonly id: string
  close(): Promise<void>
}

export interface AuditLog {
  audit(limit: number): Promise<AuditEntry[]>
}

export interface RolloutHistory {
  saveRollout(record: RolloutRecord): Promise<void>
  rollouts(limit: number): Promise<RolloutRecord[]>
}

export interface LeaderLease {
  /**
   * Whether this process may drive the rollout now: one proxy at a time
   * holds the lease (the memory store always does). Check it right before
   * every rollout step; it can turn false at any moment.
   */
  readonly leader: boolean
  onLeadershipChange(listener: (leader: boolean) => void): void
}

export interface SliceExchange {
  /**
   * Shares this proxy's analysis slices, by version name, for the verdict
   * on every proxy's traffic. Best effort: never throws.
   */
  publishSlices(proxyId: string, byVersion: Readonly<Record<string, readonly SliceSnapshot[]>>): Promise<void>
  /**
   * One slice list per live proxy (this one included unless `exclude` names
   * it); dead proxies fall out after about a window.
   */
  readSlices(version: string, exclude?: string): Promise<SliceSnapshot[][]>
}
