import type { Logger } from 'pino'
import type { AuditEntry, ChangeSource, DesiredState } from './desired.js'
import type { StateStore } from './store.js'

export interface ChangeMeta {
  source: ChangeSource
  actor?: string | null
  reason?: string | null
}

/** What a change does to the state, and what the audit shows of it. */
export interface ChangePlan {
  next: DesiredState
  before: unknown
  after: unknown
}

const MAX_CONFLICT_RETRIES = 8

/**
 * The one code path for every change of desired state, whoever asks
 * (operator, rollout, analysis, reload): the change is computed from the
 * latest state, committed to the store by revision, written to the audit
 * list and the log, then applied to this process (which rebuilds the
 * routing table). Changes are serialised so two admin calls never
 * interleave.
 */
export class Control {
  #queue: Promise<unknown> = Promise.resolve()

  constructor(
    readonly store: StateStore,
    readonly log: Logger,
    readonly apply: (state: DesiredState) => void,
  ) {
    store.onRemoteChange((state, entries) => {
      for (const e of entries) this.log.info({ audit: { ...e, source: 'peer' } }, `peer change: ${e.action}`)
      this.apply(state)
    })
  }

  get state(): DesiredState {
    return this.store.current()
  }

  /**
   * `plan` gets a private copy of the latest state and returns the next one
   * (revision is set here) or throws to refuse the change (nothing changes).
   */
  change(action: string, meta: ChangeMeta, plan: (s: DesiredState) => ChangePlan): Promise<DesiredState> {
    const run = this.#queue.then(() => this.#change(action, meta, plan))
    this.#queue = run.catch(() => {})
    return run
  }

  async #change(action: string, meta: ChangeMeta, plan: (s: DesiredState) => ChangePlan): Promise<DesiredState> {
    let base = structuredClone(this.store.current())
    for (let attempt = 0; ; attempt++) {
      const p = plan(structuredClone(base))
      const next: DesiredState = { ...p.next, revision: base.revision + 1 }
      const entry: AuditEntry = {
        at: new Date().toISOString(),
        action,
        source: meta.source,
        actor: meta.actor ?? null,
        before: p.before,
        after: p.after,
        reason: meta.reason ?? null,
        revision: next.revision,
      }
      const res = await this.store.commit(next, entry)
      if (res.ok) {
        this.log.info({ audit: entry }, `${action} by ${meta.source}${meta.actor ? ` (${meta.actor})` : ''}`)
        // The store's latest: a peer's newer change may have arrived while this commit was in flight.
        this.apply(this.store.current())
        return next
      }
      if (attempt >= MAX_CONFLICT_RETRIES) throw new Error(`state store kept conflicting on ${action}`)
      base = res.state
      this.apply(base)
    }
  }
}
