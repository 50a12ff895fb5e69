import type { SliceSnapshot } from '../analysis/slices.js'
import type { AuditEntry, DesiredState } from './desired.js'
import type { CommitResult, RolloutRecord, StateStore } from './store.js'

const AUDIT_KEEP = 1000
const ROLLOUTS_KEEP = 50

/** The embedded default: one process, no dependencies, bounded history. */
export class MemoryStore implements StateStore {
  readonly kind = 'memory' as const
  readonly up = true
  readonly id = 'local'
  /** One process: it is always the one that drives the rollout. */
  readonly leader = true
  #state: DesiredState | undefined
  readonly #audit: AuditEntry[] = []
  readonly #rollouts: RolloutRecord[] = []
  readonly #slices = new Map<string, SliceSnapshot[]>()

  async init(seed: DesiredState): Promise<DesiredState> {
    this.#state ??= structuredClone(seed)
    return structuredClone(this.#state)
  }

  current(): DesiredState {
    if (!this.#state) throw new Error('store used before init')
    return this.#state
  }

  async commit(next: DesiredState, entry: AuditEntry): Promise<CommitResult> {
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
    return limit > 0 ? this.#audit.slice(-limit) : []
  }

  async saveRollout(record: RolloutRecord): Promise<void> {
    const i = this.#rollouts.findIndex((r) => r.id === record.id)
    if (i >= 0) this.#rollouts[i] = structuredClone(record)
    else this.#rollouts.push(structuredClone(record))
    if (this.#rollouts.length > ROLLOUTS_KEEP) this.#rollouts.splice(0, this.#rollouts.length - ROLLOUTS_KEEP)
  }

  async rollouts(limit: number): Promise<RolloutRecord[]> {
    return limit > 0 ? structuredClone(this.#rollouts.slice(-limit)) : []
  }

  onLeadershipChange(): void {
    // Leadership never changes in one process.
  }

  async publishSlices(_proxyId: string, byVersion: Readonly<Record<string, readonly SliceSnapshot[]>>): Promise<void> {
    for (const [version, slices] of Object.entries(byVersion)) this.#slices.set(version, structuredClone([...slices]))
  }

  async readSlices(version: string, exclude?: string): Promise<SliceSnapshot[][]> {
    const own = this.#slices.get(version)
    return own && exclude !== this.id ? [structuredClone(own)] : []
  }

  async close(): Promise<void> {}
}
