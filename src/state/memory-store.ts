import type { SliceSnapshot } from '../analysis/slices.js'
import type { AuditEntry, DesiredState } from './desired.js'
import type { StateFile, StoreSnapshot } from './state-file.js'
import type { CommitResult, RolloutRecord, StateStore } from './store.js'

const AUDIT_KEEP = 1000
const ROLLOUTS_KEEP = 50

/**
 * The embedded default: one process, no dependencies, bounded history.
 *
 * With a state file, every change (commit, rollout record) is written to it
 * before it counts: the operation resolves after the write, and only then
 * does `current()` show it. A failed write refuses the change and leaves
 * the state as it was. Changes are serialised, so the file always holds
 * the newest acknowledged state; the data path never reads the store.
 */
export class MemoryStore implements StateStore {
  readonly kind: 'memory' | 'file'
  readonly up = true
  readonly id = 'local'
  /** One process: it is always the one that drives the rollout. */
  readonly leader = true
  readonly #file: StateFile | undefined
  #restored: { from: string; revision: number } | undefined
  #state: DesiredState | undefined
  #audit: AuditEntry[] = []
  #rollouts: RolloutRecord[] = []
  readonly #slices = new Map<string, SliceSnapshot[]>()
  /** The tail of the serialised changes. */
  #queue: Promise<unknown> = Promise.resolve()

  constructor(opts: { file?: StateFile } = {}) {
    this.#file = opts.file
    this.kind = opts.file ? 'file' : 'memory'
  }

  get restored(): { from: string; revision: number } | undefined {
    return this.#restored
  }

  /** With a state file, its content wins over `seed`; a first start writes the seed, so a bad path fails now. */
  async init(seed: DesiredState): Promise<DesiredState> {
    if (this.#state) return structuredClone(this.#state)
    const saved = await this.#file?.load()
    if (saved) {
      this.#restored = { from: this.#file!.path, revision: saved.state.revision }
      this.#audit = saved.audit.slice(-AUDIT_KEEP)
      this.#rollouts = saved.rollouts.slice(-ROLLOUTS_KEEP)
      this.#state = saved.state
    } else {
      const state = structuredClone(seed)
      await this.#file?.save({ state, audit: this.#audit, rollouts: this.#rollouts })
      this.#state = state
    }
    return structuredClone(this.#state)
  }

  current(): DesiredState {
    if (!this.#state) throw new Error('store used before init')
    return this.#state
  }

  commit(next: DesiredState, entry: AuditEntry): Promise<CommitResult> {
    return this.#serial(async () => {
      const cur = this.current()
      if (next.revision !== cur.revision + 1) return { ok: false, state: structuredClone(cur) }
      const state = structuredClone(next)
      const audit = keepNewest([...this.#audit, entry], AUDIT_KEEP)
      await this.#save({ state, audit, rollouts: this.#rollouts })
      this.#state = state
      this.#audit = audit
      return { ok: true }
    })
  }

  onRemoteChange(): void {
    // One process: there is no other writer.
  }

  async audit(limit: number): Promise<AuditEntry[]> {
    return limit > 0 ? this.#audit.slice(-limit) : []
  }

  saveRollout(record: RolloutRecord): Promise<void> {
    return this.#serial(async () => {
      const rollouts = [...this.#rollouts]
      const i = rollouts.findIndex((r) => r.id === record.id)
      if (i >= 0) rollouts[i] = structuredClone(record)
      else rollouts.push(structuredClone(record))
      const kept = keepNewest(rollouts, ROLLOUTS_KEEP)
      await this.#save({ state: this.current(), audit: this.#audit, rollouts: kept })
      this.#rollouts = kept
    })
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

  /** Waits for a write in flight: an acknowledged change is on disk before the process goes. */
  async close(): Promise<void> {
    await this.#queue.catch(() => {})
  }

  #save(snapshot: StoreSnapshot): Promise<void> {
    return this.#file ? this.#file.save(snapshot) : Promise.resolve()
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op)
    this.#queue = run.catch(() => {})
    return run
  }
}

function keepNewest<T>(list: T[], keep: number): T[] {
  return list.length > keep ? list.slice(list.length - keep) : list
}
