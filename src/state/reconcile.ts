import { stringify as stableJson } from 'safe-stable-stringify'
import type { AuditEntry, DesiredState } from './desired.js'

/** A change committed in this process while the shared store was unreachable. */
export interface PendingChange {
  /** The state this change was made on. */
  previous: DesiredState
  state: DesiredState
  entry: AuditEntry
}

/** What to do so that this process and the shared store agree again. */
export type ReconcileStep =
  /** They agree (pending changes, if any, are already in the shared store). */
  | { kind: 'none' }
  /** The shared state wins; `overridden` are this process's pending changes it discards. */
  | { kind: 'adopt'; state: DesiredState; overridden: PendingChange[] }
  /**
   * Write `state` (with the audit `entries`) if the shared revision is still
   * `expected` (0: the shared store is empty). `overridden`: pending changes
   * discarded; non-empty only when a pending rollback is re-applied on top
   * of a newer shared state.
   */
  | { kind: 'write'; state: DesiredState; expected: number; entries: AuditEntry[]; overridden: PendingChange[] }

/**
 * Decides how a proxy catches up with the shared store after an outage, or
 * after the store lost its data. Revisions order everything:
 *
 * - nothing pending: the higher revision wins, either way, so a store that
 *   came back empty (or older) is re-seeded by the proxy with the highest
 *   revision (each writes by compare-and-set on the revision it read, and
 *   only when it is ahead);
 * - pending changes on top of revision B: if the shared revision is still B
 *   (or lower, or gone), nobody else changed anything and the pending
 *   changes are written; otherwise the shared state wins, except that a
 *   pending rollback is re-applied on top of it, because rolling back is
 *   always safe and must not be lost to a partition.
 */
export function planReconcile(
  local: DesiredState,
  pending: readonly PendingChange[],
  remote: DesiredState | null,
): ReconcileStep {
  const remoteRevision = remote?.revision ?? 0
  const first = pending[0]
  if (first === undefined) {
    if (remote !== null && remoteRevision > local.revision) return { kind: 'adopt', state: remote, overridden: [] }
    if (remoteRevision < local.revision)
      return { kind: 'write', state: local, expected: remoteRevision, entries: [], overridden: [] }
    return { kind: 'none' }
  }
  const base = first.previous.revision
  if (remote === null || remoteRevision <= base) {
    return {
      kind: 'write',
      state: local,
      expected: remoteRevision,
      entries: pending.map((p) => p.entry),
      overridden: [],
    }
  }
  // The in-flight commit that looked lost may have landed after all.
  if (remoteRevision === local.revision && sameState(remote, local)) return { kind: 'none' }
  const rollback = lastRollback(pending)
  if (rollback !== undefined && rolloutStatus(remote) !== 'rolled_back') {
    const revision = remoteRevision + 1
    const state: DesiredState = {
      ...remote,
      weights: rollback.state.weights,
      rollout: rollback.state.rollout,
      revision,
    }
    const entry: AuditEntry = {
      ...rollback.entry,
      before: { weights: remote.weights, rollout: remote.rollout },
      revision,
      reason: `${rollback.entry.reason ?? 'rolled back'} (re-applied after the state store was unreachable)`,
    }
    return {
      kind: 'write',
      state,
      expected: remoteRevision,
      entries: [entry],
      overridden: pending.filter((p) => p !== rollback),
    }
  }
  return { kind: 'adopt', state: remote, overridden: [...pending] }
}

/** The pending change that rolled the rollout back, if the rollout is still rolled back at the end. */
function lastRollback(pending: readonly PendingChange[]): PendingChange | undefined {
  if (rolloutStatus(pending[pending.length - 1]!.state) !== 'rolled_back') return undefined
  for (let i = pending.length - 1; i >= 0; i--) {
    const p = pending[i]!
    if (rolloutStatus(p.state) === 'rolled_back' && rolloutStatus(p.previous) !== 'rolled_back') return p
  }
  return undefined
}

function rolloutStatus(s: DesiredState): unknown {
  return s.rollout?.status
}

/** Canonical JSON: a state read back from another proxy has its keys in the schema's order, not the writer's. */
function sameState(a: DesiredState, b: DesiredState): boolean {
  return stableJson(a) === stableJson(b)
}
