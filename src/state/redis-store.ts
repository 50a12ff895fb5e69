import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import type { ConnectionOptions } from 'node:tls'
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import type { SliceSnapshot } from '../analysis/slices.js'
import type { AuditEntry, DesiredState } from './desired.js'
import { firstProblem, sharedStateSchema } from './desired-schema.js'
import { LeaderLease } from './lease.js'
import { type PendingChange, planReconcile, type ReconcileStep } from './reconcile.js'
import { defineScripts, type ScriptedRedis } from './redis-scripts.js'
import type { CommitResult, RolloutRecord, StateStore } from './store.js'

export interface RedisStoreOptions {
  /** redis:// or rediss:// (TLS), with a password if needed: `redis://:secret@host:6379/0`. */
  url: string
  /** Isolates one group of proxies from another on the same Redis. */
  keyPrefix: string
  log: Logger
  /** The rollout driver's leader lease. Default 2000. */
  leaseMs?: number
  /** The safety net under pub/sub: how often the shared revision is checked. Default 500. */
  pollMs?: number
  /** How long a proxy's analysis slices stay after its last publication (about the analysis window). Default 60000. */
  slicesTtlMs?: number
  /** How long `init` waits for Redis before starting on the seed (fail-static). Default 3000. */
  connectTimeoutMs?: number
  /** Default: host name, pid and a random suffix. */
  id?: string
  /** Extra TLS settings for a rediss:// URL, e.g. `{ ca }` for a private certificate authority. */
  tls?: ConnectionOptions
}

const AUDIT_KEEP = 1000
const ROLLOUTS_KEEP = 50
const COMMAND_TIMEOUT_MS = 2000
const MAX_RECONCILE_ROUNDS = 8

interface ChangeMessage {
  origin: string
  state: DesiredState
  entries: AuditEntry[]
}

/**
 * Several proxies as one: the desired state, the audit list, rollout
 * records, the leader lease and the analysis slices live in Redis under
 * `keyPrefix`.
 *
 * - A commit is a compare-and-set on the revision (one Lua script that also
 *   appends the audit entries and publishes the change). Other proxies get
 *   it by pub/sub at once, and by polling the revision every `pollMs`, so a
 *   lost message delays a proxy by one poll at most.
 * - Fail-static: `current()` is in memory and never waits on Redis. While
 *   Redis is unreachable, the proxy keeps serving its last-known state, and
 *   a change is applied to this proxy only and kept pending; when Redis
 *   returns, `planReconcile` settles it by revision (and a Redis that came
 *   back empty is re-seeded, highest revision first).
 */
export class RedisStore implements StateStore {
  readonly kind = 'redis' as const
  readonly id: string
  readonly #opts: Required<Omit<RedisStoreOptions, 'id' | 'log' | 'tls'>>
  readonly #log: Logger
  readonly #client: ScriptedRedis
  readonly #sub: Redis
  readonly #lease: LeaderLease
  readonly #keys: ReturnType<typeof keysOf>
  readonly #listeners: ((state: DesiredState, entries: AuditEntry[]) => void)[] = []
  #state: DesiredState | undefined
  #pending: PendingChange[] = []
  #up = false
  #initialised = false
  #closed = false
  #outageReported = false
  #syncing: Promise<void> | undefined
  #syncAgain = false
  #pollTimer: NodeJS.Timeout | undefined
  /** Recent entries this proxy made or saw: the audit list while Redis is unreachable. */
  readonly #audit: AuditEntry[] = []
  /** Rollout records this proxy saved, newest last; `#unsaved` are not in Redis yet. */
  readonly #rollouts = new Map<string, RolloutRecord>()
  readonly #unsaved = new Set<string>()
  readonly #ownSlices = new Map<string, SliceSnapshot[]>()

  constructor(opts: RedisStoreOptions) {
    this.id = opts.id ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    this.#log = opts.log.child({ store: 'redis' })
    this.#opts = {
      url: opts.url,
      keyPrefix: opts.keyPrefix,
      leaseMs: opts.leaseMs ?? 2000,
      pollMs: opts.pollMs ?? 500,
      slicesTtlMs: opts.slicesTtlMs ?? 60_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 3000,
    }
    this.#keys = keysOf(opts.keyPrefix)
    this.#client = defineScripts(
      new Redis(opts.url, {
        ...connectionOptions(opts.url, opts.tls),
        // Fail fast while unreachable, so a commit falls back to local at once
        // and a command in flight is never replayed after a reconnect.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        commandTimeout: COMMAND_TIMEOUT_MS,
      }),
    )
    this.#sub = new Redis(opts.url, { ...connectionOptions(opts.url, opts.tls), autoResubscribe: false })
    this.#lease = new LeaderLease({
      leaseMs: this.#opts.leaseMs,
      log: this.#log,
      acquire: () =>
        this.#client.sluiceLease(this.#keys.leader, this.#keys.fence, this.#keys.hold, this.id, this.#opts.leaseMs),
      release: async () => {
        await this.#client.sluiceRelease(this.#keys.leader, this.id)
      },
    })
  }

  get up(): boolean {
    return this.#up
  }

  get leader(): boolean {
    return this.#lease.leader
  }

  /** The fencing token of this proxy's lease, 0 when it is not the leader. */
  get leaderToken(): number {
    return this.#lease.token
  }

  async init(seed: DesiredState): Promise<DesiredState> {
    this.#state = structuredClone(seed)
    this.#client.on('error', (err) => this.#log.debug({ err }, 'redis connection error'))
    this.#client.on('close', () => this.#markDown('connection closed'))
    this.#client.on('ready', () => void this.#requestSync())
    this.#sub.on('error', (err) => this.#log.debug({ err }, 'redis subscriber error'))
    this.#sub.on('message', (channel: string, message: string) => {
      if (channel === this.#keys.channel) this.#onMessage(message)
    })
    // Subscribes on every (re)connection itself: ioredis's own resubscription
    // leaves a rejected promise unhandled when the connection drops again.
    const subscribed = new Promise<void>((resolve) => {
      this.#sub.on('ready', () => {
        this.#sub.subscribe(this.#keys.channel).then(() => {
          resolve()
          // Messages may have been missed while the subscriber was away.
          void this.#requestSync()
        }, noop)
      })
    })
    this.#client.connect().catch(noop)
    this.#sub.connect().catch(noop)
    const ready = await Promise.race([
      Promise.all([once(this.#client, 'ready'), subscribed]).then(() => true),
      delay(this.#opts.connectTimeoutMs).then(() => false),
    ])
    if (ready) await this.#requestSync()
    if (!this.#up && !this.#outageReported) {
      this.#outageReported = true
      this.#log.warn(
        { revision: this.#state.revision },
        'state store unreachable at start: serving the config file state until it is reachable',
      )
    }
    this.#initialised = true
    this.#pollTimer = setInterval(() => this.#poll(), this.#opts.pollMs)
    this.#pollTimer.unref()
    this.#lease.start()
    return structuredClone(this.#state)
  }

  current(): DesiredState {
    if (!this.#state) throw new Error('store used before init')
    return this.#state
  }

  async commit(next: DesiredState, entry: AuditEntry): Promise<CommitResult> {
    const cur = this.current()
    if (next.revision !== cur.revision + 1) return { ok: false, state: structuredClone(cur) }
    if (!this.#up || this.#pending.length > 0) return this.#commitLocally(cur, next, entry)
    let res: [0 | 1, string | null]
    try {
      res = await this.#cas(cur.revision, next, [entry])
    } catch (err) {
      // It may or may not have landed: reconciliation finds out by revision.
      this.#markDown('commit failed', err)
      return this.#commitLocally(cur, next, entry)
    }
    if (res[0] === 1) {
      if (next.revision > this.current().revision) this.#state = structuredClone(next)
      this.#remember([entry])
      return { ok: true }
    }
    const remote = res[1] === null ? null : parseState(res[1])
    if (remote === null || remote.revision < cur.revision) {
      // Redis lost (part of) its data: re-seed it first, then let the caller retry.
      await this.#requestSync()
    } else if (remote.revision > this.current().revision) {
      const entries = await this.#entriesAfter(this.current().revision, remote.revision)
      if (remote.revision > this.current().revision) this.#accept(remote, entries)
    }
    return { ok: false, state: structuredClone(this.current()) }
  }

  onRemoteChange(listener: (state: DesiredState, entries: AuditEntry[]) => void): void {
    this.#listeners.push(listener)
  }

  onLeadershipChange(listener: (leader: boolean) => void): void {
    this.#lease.onChange(listener)
  }

  async audit(limit: number): Promise<AuditEntry[]> {
    if (limit <= 0) return []
    if (this.#up) {
      try {
        const raw = await this.#client.lrange(this.#keys.audit, -limit, -1)
        return raw.map((s) => JSON.parse(s) as AuditEntry)
      } catch (err) {
        this.#log.debug({ err }, 'audit read failed: answering from this proxy')
      }
    }
    return this.#audit.slice(-limit)
  }

  async saveRollout(record: RolloutRecord): Promise<void> {
    const copy = structuredClone(record)
    this.#rollouts.delete(copy.id)
    this.#rollouts.set(copy.id, copy)
    if (this.#rollouts.size > ROLLOUTS_KEEP) this.#rollouts.delete(this.#rollouts.keys().next().value!)
    this.#unsaved.add(copy.id)
    if (this.#up) await this.#flushRollouts(false)
  }

  async rollouts(limit: number): Promise<RolloutRecord[]> {
    if (limit <= 0) return []
    if (this.#up) {
      try {
        const raw = await this.#client.sluiceRolloutList(this.#keys.rollouts, this.#keys.rolloutIds, limit)
        return raw.filter((s): s is string => s !== null).map((s) => JSON.parse(s) as RolloutRecord)
      } catch (err) {
        this.#log.debug({ err }, 'rollouts read failed: answering from this proxy')
      }
    }
    return structuredClone([...this.#rollouts.values()].slice(-limit))
  }

  async publishSlices(proxyId: string, byVersion: Readonly<Record<string, readonly SliceSnapshot[]>>): Promise<void> {
    const entries = Object.entries(byVersion)
    for (const [version, slices] of entries) this.#ownSlices.set(version, structuredClone([...slices]))
    if (!this.#up) return
    try {
      await Promise.all(
        entries.map(([version, slices]) =>
          this.#client.sluiceSlicesPut(
            this.#keys.slices(version),
            proxyId,
            JSON.stringify(slices),
            this.#opts.slicesTtlMs,
          ),
        ),
      )
    } catch (err) {
      this.#log.debug({ err }, 'publishing analysis slices failed')
    }
  }

  async readSlices(version: string, exclude?: string): Promise<SliceSnapshot[][]> {
    if (this.#up) {
      try {
        const raw = await this.#client.sluiceSlicesGet(this.#keys.slices(version), this.#opts.slicesTtlMs, exclude ?? '')
        return raw.map((s) => JSON.parse(s) as SliceSnapshot[])
      } catch (err) {
        this.#log.debug({ err }, 'reading analysis slices failed: using this proxy only')
      }
    }
    const own = this.#ownSlices.get(version)
    return own && exclude !== this.id ? [structuredClone(own)] : []
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#pollTimer)
    await this.#lease.stop(true)
    await this.#syncing
    await Promise.all([quit(this.#client), quit(this.#sub)])
  }

  // ---- keeping up with the other proxies ----

  #onMessage(message: string): void {
    let m: ChangeMessage
    try {
      m = JSON.parse(message) as ChangeMessage
    } catch {
      return
    }
    if (m.origin === this.id || this.#state === undefined) return
    const local = this.#state.revision
    if (m.state.revision === local + 1 && this.#up && this.#pending.length === 0 && this.#syncing === undefined) {
      let state: DesiredState
      try {
        state = parseState(m.state)
      } catch (err) {
        this.#log.error({ err, revision: m.state.revision }, 'ignoring an invalid state from another proxy')
        return
      }
      this.#accept(state, m.entries)
    } else if (m.state.revision > local) {
      void this.#requestSync()
    }
  }

  #poll(): void {
    if (this.#closed || this.#client.status !== 'ready') return
    if (!this.#up || this.#pending.length > 0) {
      void this.#requestSync()
      return
    }
    this.#client.hget(this.#keys.state, 'revision').then(
      (rev) => {
        if (Number(rev ?? 0) !== this.current().revision) void this.#requestSync()
      },
      (err: unknown) => this.#markDown('poll failed', err),
    )
  }

  /** Runs one reconciliation at a time; a request during a run runs it once more after. */
  #requestSync(): Promise<void> {
    if (this.#closed || this.#state === undefined) return Promise.resolve()
    if (this.#syncing) {
      this.#syncAgain = true
      return this.#syncing
    }
    this.#syncing = (async () => {
      try {
        do {
          this.#syncAgain = false
          await this.#syncOnce()
        } while ((this.#syncAgain || this.#pending.length > 0) && !this.#closed)
      } catch (err) {
        this.#markDown('reconcile failed', err)
      } finally {
        this.#syncing = undefined
      }
    })()
    return this.#syncing
  }

  async #syncOnce(): Promise<void> {
    for (let round = 0; round < MAX_RECONCILE_ROUNDS; round++) {
      const raw = await this.#client.hget(this.#keys.state, 'json')
      const remote = raw === null ? null : parseState(raw)
      const local = this.current()
      const pending = [...this.#pending]
      const step = planReconcile(local, pending, remote)
      if (step.kind === 'adopt') {
        if (step.overridden.length > 0)
          this.#log.warn(
            { revision: step.state.revision, overridden: step.overridden.map(summary) },
            'changes made here while the state store was unreachable were overridden by a newer shared state',
          )
        const entries = await this.#entriesAfter(local.revision, step.state.revision)
        this.#pending.splice(0, pending.length)
        this.#accept(step.state, entries)
      } else if (step.kind === 'write') {
        const res = await this.#cas(step.expected, step.state, step.entries)
        if (res[0] === 0) continue
        this.#pending.splice(0, pending.length)
        const reapplied = step.state !== local
        this.#reportWrite(step, pending.length, reapplied)
        if (reapplied) this.#accept(step.state, step.entries)
        if (step.expected === 0) await this.#flushRollouts(true)
      } else {
        this.#pending.splice(0, pending.length)
      }
      this.#settled()
      return
    }
    throw new Error('state store kept changing during reconciliation')
  }

  #reportWrite(step: Extract<ReconcileStep, { kind: 'write' }>, pending: number, reapplied: boolean): void {
    const revision = step.state.revision
    if (reapplied) {
      this.#log.warn(
        { revision, overridden: step.overridden.map(summary), reapplied: step.entries.map(summary) },
        'a rollback made here while the state store was unreachable was re-applied on top of the newer shared state',
      )
    } else if (pending > 0) {
      this.#log.info(
        { revision, changes: step.entries.map(summary) },
        'changes made here while the state store was unreachable are now shared',
      )
    } else if (!this.#initialised && step.expected === 0) {
      this.#log.info({ revision }, 'state store was empty: seeded it with this proxy state')
    } else {
      this.#log.warn(
        { revision, sharedRevision: step.expected },
        step.expected === 0
          ? 'state store was empty: re-seeded it from this proxy state'
          : 'state store was behind this proxy: re-seeded it from this proxy state',
      )
    }
  }

  /** Up again: clear the outage and share what waited for it. */
  #settled(): void {
    if (this.#pending.length > 0 || this.#client.status !== 'ready') return
    if (!this.#up) {
      this.#up = true
      if (this.#outageReported) this.#log.info({ revision: this.current().revision }, 'state store reachable again')
      this.#outageReported = false
    }
    if (this.#unsaved.size > 0) void this.#flushRollouts(false)
  }

  #markDown(why: string, err?: unknown): void {
    if (this.#closed) return
    this.#up = false
    if (this.#outageReported) return
    this.#outageReported = true
    this.#log.warn(
      { why, err, revision: this.#state?.revision },
      'state store unreachable: serving the last-known state, retrying',
    )
  }

  #commitLocally(cur: DesiredState, next: DesiredState, entry: AuditEntry): CommitResult {
    this.#pending.push({ previous: structuredClone(cur), state: structuredClone(next), entry })
    this.#state = structuredClone(next)
    this.#remember([entry])
    this.#log.warn(
      { revision: next.revision, action: entry.action },
      'state store unreachable: change applied to this proxy only, to be shared when it returns',
    )
    return {
      ok: true,
      pending: true,
      warning: 'state store unreachable: applied to this proxy only; shared when the store is reachable again',
    }
  }

  /** Takes a state from the shared store and tells the listeners (the Control applies it). */
  #accept(state: DesiredState, entries: AuditEntry[]): void {
    this.#state = structuredClone(state)
    this.#remember(entries)
    if (!this.#initialised) return
    for (const l of this.#listeners) {
      try {
        l(this.#state, entries)
      } catch (err) {
        this.#log.error({ err }, 'applying a shared change failed')
      }
    }
  }

  #remember(entries: readonly AuditEntry[]): void {
    this.#audit.push(...entries)
    if (this.#audit.length > AUDIT_KEEP) this.#audit.splice(0, this.#audit.length - AUDIT_KEEP)
  }

  #cas(expected: number, state: DesiredState, entries: readonly AuditEntry[]): Promise<[0 | 1, string | null]> {
    const message: ChangeMessage = { origin: this.id, state, entries: [...entries] }
    return this.#client.sluiceCas(
      this.#keys.state,
      this.#keys.audit,
      expected,
      state.revision,
      JSON.stringify(state),
      this.#keys.channel,
      JSON.stringify(message),
      AUDIT_KEEP,
      ...entries.map((e) => JSON.stringify(e)),
    )
  }

  /** The shared audit entries of revisions in (from, to]; best effort. */
  async #entriesAfter(from: number, to: number): Promise<AuditEntry[]> {
    if (to <= from) return []
    try {
      const n = Math.min(to - from + 8, AUDIT_KEEP)
      const raw = await this.#client.lrange(this.#keys.audit, -n, -1)
      return raw.map((s) => JSON.parse(s) as AuditEntry).filter((e) => e.revision > from && e.revision <= to)
    } catch {
      return []
    }
  }

  /** Writes rollout records Redis does not have; `all` re-seeds every local record a restarted Redis lacks. */
  async #flushRollouts(all: boolean): Promise<void> {
    const ids = all ? [...this.#rollouts.keys()] : [...this.#unsaved]
    for (const id of ids) {
      const record = this.#rollouts.get(id)
      if (record === undefined) {
        this.#unsaved.delete(id)
        continue
      }
      const onlyIfAbsent = this.#unsaved.has(id) ? '0' : '1'
      try {
        await this.#client.sluiceRolloutPut(
          this.#keys.rollouts,
          this.#keys.rolloutIds,
          id,
          JSON.stringify(record),
          ROLLOUTS_KEEP,
          onlyIfAbsent,
        )
        if (this.#rollouts.get(id) === record) this.#unsaved.delete(id)
      } catch (err) {
        this.#log.debug({ err, id }, 'saving a rollout record failed: kept for when the store returns')
        return
      }
    }
  }
}

function keysOf(prefix: string) {
  return {
    state: `${prefix}state`,
    audit: `${prefix}audit`,
    rollouts: `${prefix}rollouts`,
    rolloutIds: `${prefix}rollout-ids`,
    leader: `${prefix}leader`,
    fence: `${prefix}leader-fence`,
    hold: `${prefix}leader-hold`,
    channel: `${prefix}changes`,
    slices: (version: string) => `${prefix}slices:${version}`,
  }
}

/** Connection settings shared by both connections: TLS for rediss://, reconnects with capped backoff. */
function connectionOptions(url: string, tls: ConnectionOptions | undefined): RedisOptions {
  const u = new URL(url)
  const host = u.hostname.replace(/^\[|\]$/g, '')
  return {
    lazyConnect: true,
    connectTimeout: 2000,
    // 100, 200, 400, 800 ms, then every second (with jitter), for ever.
    retryStrategy: (times) => Math.round(Math.min(50 * 2 ** Math.min(times, 5), 1000) * (0.8 + Math.random() * 0.4)),
    // SNI takes a host name only; an IP address is checked against the certificate without it.
    ...(u.protocol === 'rediss:' ? { tls: { ...(isIP(host) ? {} : { servername: host }), ...tls } } : {}),
  }
}

/** Another proxy's state, validated: one that fails is never applied (the store counts as down until it is fixed). */
function parseState(raw: unknown): DesiredState {
  const parsed = sharedStateSchema.safeParse(typeof raw === 'string' ? JSON.parse(raw) : raw)
  if (!parsed.success) throw new Error(`invalid shared state in redis at ${firstProblem(parsed.error)}`)
  return parsed.data
}

function summary(p: PendingChange | AuditEntry): Record<string, unknown> {
  const e = 'entry' in p ? p.entry : p
  return { action: e.action, source: e.source, actor: e.actor, revision: e.revision, after: e.after }
}

function once(emitter: Redis, event: string): Promise<void> {
  return new Promise((resolve) => emitter.once(event, () => resolve()))
}

function noop(): void {}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}

async function quit(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    await Promise.race([client.quit().catch(noop), delay(500)])
  }
  client.disconnect()
}
