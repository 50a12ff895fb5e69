import type { AuditEntry, DesiredState } from './desired.js'
import type { RolloutRecord, StateStore } from './store.js'

const AUDIT_KEEP = 1000
const ROLLOUTS_KEEP = 50

/** The embedded default: one process, no dependencies, bounded history. */
export class MemoryStore implements StateStore {
  readonly kind = 'memory' as const
  readonly up = true
  #state: DesiredState | undefined
  readonly #audit: AuditEntry[] = []
  readonly #rollouts: RolloutRecord[] = []

  async init(seed: DesiredState): Promise<DesiredState> {
    this.#state ??= structuredClone(seed)
    return structuredClone(this.#state)
  }

  current(): DesiredState {
    if (!this.#state) throw new Error('store used before init')
    return this.#state
  }

  async commit(next: DesiredState, entry: AuditEntry): Promise<{ ok: true } | { ok: false; state: DesiredState }> {
    const cur = this.current()
    if (next.revision !== cur.revision + 1) return { ok: false, state: structuredClone(cur) }
    this.#state = structuredClone(next)
    this.#audit.push(entry)
    if (this.#audit.length > AUDIT_KEEP) this.#audit.splice(0, this.#audit.length - AUDIT_KEEP)
    return { ok: true }
  }

  onRemoteChange(): void {
    // One process: there is no other writer.
  }

  async audit(limit: number): Promise<AuditEntry[]> {
    return this.#audit.slice(-limit)
  }

  async saveRollout(record: RolloutRecord): Promise<void> {
    const i = this.#rollouts.findIndex((r) => r.id === record.id)
    if (i >= 0) this.#rollouts[i] = structuredClone(record)
    else this.#rollouts.push(structuredClone(record))
    if (this.#rollouts.length > ROLLOUTS_KEEP) this.#rollouts.splice(0, this.#rollouts.length - ROLLOUTS_KEEP)
  }

  async rollouts(limit: number): Promise<RolloutRecord[]> {
    return structuredClone(this.#rollouts.slice(-limit))
  }

  async close(): Promise<void> {}
}
