import type { AuditEntry, DesiredState } from './desired.js'

/** A finished or running rollout's record, for GET /v1/rollouts. Opaque to the store. */
export type RolloutRecord = Record<string, unknown> & { id: string }

/**
 * Where the desired state lives: in process (the default) or in Redis
 * (several proxies as one). Asynchronous and message-shaped, so a
 * cluster-local store fits beside these two. Both implementations pass one
 * contract test suite (test/unit/state/store-contract.ts).
 */
export interface StateStore {
  readonly kind: 'memory' | 'redis'
  /** Loads the shared state, seeding it with `seed` if the store is empty. */
  init(seed: DesiredState): Promise<DesiredState>
  /** The latest state this process knows (never blocks). */
  current(): DesiredState
  /**
   * Commits `next` if the stored revision is still `next.revision - 1`;
   * otherwise answers `{ ok: false, state }` with the newer state so the
   * caller can re-apply its change on top of it.
   */
  commit(next: DesiredState, entry: AuditEntry): Promise<{ ok: true } | { ok: false; state: DesiredState }>
  /** Another proxy's committed change (never called for this process's own commits). */
  onRemoteChange(listener: (state: DesiredState, entries: AuditEntry[]) => void): void
  audit(limit: number): Promise<AuditEntry[]>
  saveRollout(record: RolloutRecord): Promise<void>
  rollouts(limit: number): Promise<RolloutRecord[]>
  /** Whether the shared store is reachable now (the memory store always is). */
  readonly up: boolean
  close(): Promise<void>
}
