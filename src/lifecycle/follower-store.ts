import type { SliceSnapshot } from '../analysis/slices.js'
import type { AuditEntry, DesiredState } from '../state/desired.js'
import type { CommitResult, RolloutRecord, StateStore } from '../state/store.js'

/**
 * A worker's view of the desired state: whatever the primary sent last. The
 * primary owns the store, the audit and the lease; a worker never commits
 * (it has no admin API and drives no rollout), so a commit here is a bug.
 */
export class FollowerStore implements StateStore {
  readonly kind = 'memory'
  readonly up = true
  readonly id = `worker-${process.pid}`
  readonly leader = false
  #state: DesiredState
  #listener: ((state: DesiredState, entries: AuditEntry[]) => void) | undefined

  constructor(first: DesiredState) {
    this.#state = first
  }

  async init(): Promise<DesiredState> {
    return this.#state
  }

  current(): DesiredState {
    return this.#state
  }

  /** The primary's latest state: applied like a peer's change. */
  receive(state: DesiredState): void {
    this.#state = state
    this.#listener?.(state, [])
  }

  commit(_next: DesiredState, _entry: AuditEntry): Promise<CommitResult> {
    return Promise.reject(new Error('a worker does not commit state changes; the primary does'))
  }

  onRemoteChange(listener: (state: DesiredState, entries: AuditEntry[]) => void): void {
    this.#listener = listener
  }

  async audit(): Promise<AuditEntry[]> {
    return []
  }

  async saveRollout(_record: RolloutRecord): Promise<void> {}

  async rollouts(): Promise<RolloutRecord[]> {
    return []
  }

  onLeadershipChange(): void {}

  async publishSlices(_id: string, _byVersion: Readonly<Record<string, readonly SliceSnapshot[]>>): Promise<void> {}

  async readSlices(): Promise<SliceSnapshot[][]> {
    return []
  }

  async close(): Promise<void> {}
}
