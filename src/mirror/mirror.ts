import type { IncomingMessage } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { AdminError } from '../errors.js'
import type { Metrics } from '../metrics/metrics.js'
import { DenseSet } from '../proxy/dense-set.js'
import type { Exchange } from '../proxy/forward.js'
import type { ProxyListener } from '../proxy/listener.js'
import type { Version } from '../routing/instance.js'
import type { RoutingTable, VersionRoute } from '../routing/table.js'
import type { MirrorFigures } from '../rollout/rollout-machine.js'
import { isActive } from '../rollout/rollout-state.js'
import type { ChangeMeta, Control } from '../state/control.js'
import type { DesiredState, MirrorSection } from '../state/types.js'
import { type CopyOwner, MirrorCopy } from './mirror-copy.js'
import { MirrorRun } from './mirror-run.js'
import { compileMirror } from './mirror-settings.js'
import type { MirrorOutcome, MirrorStats, MirrorTotals } from './mirror-stats.js'
import { type MismatchEntry, MismatchLog } from './mismatch-log.js'

/** What the mirror needs of a proxy (the core has all of it): the state, the one change path, the data path's tap. */
export interface MirrorHost {
  readonly desired: DesiredState
  readonly control: Pick<Control, 'change'>
  readonly metrics: Metrics
  readonly log: Logger
  readonly versions: readonly Version[]
  readonly listener: Pick<ProxyListener, 'setTap'>
}

/** `mirror` in GET /v1/state: the live settings and the figures of the current run. */
export type MirrorView = MirrorSection &
  Omit<MirrorTotals, 'since'> & {
    /** When mirroring with these settings began (ISO time). */
    since: string
    /** Copies in flight now. */
    inflight: number
  }

/** How often copies in flight are checked against their deadline: the most a timeout can be late. */
const SWEEP_MS = 25

const NO_FIGURES: MirrorFigures = { copied: 0, mismatches: 0, shadowP95Ms: null, primaryP95Ms: null }

/**
 * Shadow traffic (README, Mirroring). The live settings are
 * `desired.mirror`, changed only through `control.change` (PUT /v1/mirror,
 * a rollout's mirror phase, reload); this object follows them on every
 * routing table rebuild (its `onTable`, registered by the assembly). While
 * mirroring is off the listener has no tap, so unmirrored traffic pays
 * nothing.
 *
 * For a chosen request (eligible method, `percent` by sticky key or running
 * share, fewer than `maxInflight` copies in flight, a body of at most
 * `maxBodyBytes`), once the user's request has been sent upstream a copy
 * goes to a usable instance of the mirror version through that instance's
 * pool. Copies leave together at the end of the event-loop turn (after every
 * user request of that turn was written), so they never hold up a user's
 * request and share the turn's wake-up. The user's response is only watched
 * (the Exchange's tap), never delayed or changed; the shadow's answer is
 * read, compared and discarded.
 * Copies never touch the user-facing metrics, analysis windows or outlier
 * detection: they have their own figures and sluice_mirror_requests_total.
 */
export class Mirror implements CopyOwner {
  readonly #host: MirrorHost
  readonly #now: () => number
  readonly #mismatches = new MismatchLog()
  readonly #copies = new DenseSet<MirrorCopy>()
  #run: MirrorRun | undefined
  /** The settings the current run follows (null: off), compared field by field on every table. */
  #section: MirrorSection | null = null
  #table: RoutingTable | undefined
  #route: VersionRoute | undefined
  #stopped = false
  /** Copies ready to leave at the end of this turn: copy, headers, body, repeated. */
  #outbox: (MirrorCopy | string[] | Buffer | null)[] = []
  #sweep: NodeJS.Timeout | undefined
  readonly #flush = (): void => this.#sendOutbox()
  readonly #onSweep = (): void => this.#checkDeadlines()
  /** Bound once: the listener's tap while mirroring is on. */
  readonly #onSent = (req: IncomingMessage, key: number, ex: Exchange): void => this.#copy(req, key, ex)

  constructor(host: MirrorHost, opts: { now?: () => number } = {}) {
    this.#host = host
    this.#now = opts.now ?? Date.now
  }

  /** Copies in flight now. */
  get inflight(): number {
    return this.#copies.size
  }

  /** Turns mirroring on with `section` (validated) or off with null, through the one change path. */
  set(section: MirrorSection | null, meta: ChangeMeta): Promise<DesiredState> {
    if (section !== null && !this.#host.versions.some((v) => v.name === section.version)) {
      return Promise.reject(
        new AdminError(400, 'SLUICE_INVALID_BODY', `unknown version "${section.version}"`, 'version'),
      )
    }
    const rollout = this.#host.desired.rollout
    if (rollout && isActive(rollout) && rollout.phase === 'mirror') {
      return Promise.reject(
        new AdminError(
          409,
          'SLUICE_MIRROR_CONFLICT',
          `rollout of "${rollout.canary}" is in its mirror phase and owns mirroring: abort or promote it first`,
        ),
      )
    }
    return this.#host.control.change(section === null ? 'mirror.stop' : 'mirror.start', meta, (s) => ({
      next: { ...s, mirror: section === null ? null : { ...section } },
      before: s.mirror,
      after: section,
    }))
  }

  /** `mirror` of GET /v1/state; null when off. */
  view(): MirrorView | null {
    const run = this.#run
    if (run === undefined) return null
    const t = run.stats.totals()
    return { ...run.settings.section, ...t, since: new Date(t.since).toISOString(), inflight: this.#copies.size }
  }

  /**
   * The figures a rollout's mirror phase is judged on, counted since
   * `fromMs` (epoch ms, the phase's start), of the current run; zeros when
   * mirroring is off. See MirrorStats.figuresSince.
   */
  figuresSince(fromMs: number): MirrorFigures {
    return this.#run?.stats.figuresSince(fromMs) ?? NO_FIGURES
  }

  /** The current run's figures (undefined when not mirroring): what a worker reports to its primary. */
  get stats(): MirrorStats | undefined {
    return this.#run?.stats
  }

  /** The last mismatches and shadow errors, newest last. */
  mismatches(): MismatchEntry[] {
    return this.#mismatches.list()
  }

  /** The mismatches recorded since the last call (a worker's report to its primary), oldest first. */
  newMismatches(): MismatchEntry[] {
    return this.#mismatches.takeNew()
  }

  /** No more copies; those in flight are abandoned (not counted). Safe to call twice. */
  stop(): void {
    this.#stopped = true
    this.#host.listener.setTap(undefined)
    this.#outbox = []
    this.#copies.forEach((c) => c.cancel())
    clearInterval(this.#sweep)
    this.#sweep = undefined
  }

  // ---- CopyOwner ----

  released(copy: MirrorCopy): void {
    this.#copies.delete(copy)
  }

  settled(copy: MirrorCopy, outcome: MirrorOutcome, differs: readonly string[]): void {
    copy.run.settle(outcome, copy.shadowMs, copy.primaryMs)
    if (outcome !== 'mismatch' && outcome !== 'error') return
    const entry: MismatchEntry = {
      at: new Date(this.#now()).toISOString(),
      version: copy.run.settings.version,
      method: copy.method,
      path: copy.path,
      primaryStatus: copy.primary.status,
      shadowStatus: copy.shadow.status,
      differs: [...differs],
      primaryMs: round(copy.primaryMs),
      shadowMs: round(copy.shadowMs),
    }
    if (copy.error !== undefined) entry.error = copy.error
    this.#mismatches.add(entry)
  }

  // ---- following the desired state ----

  /** The routing table hook: follows a new table, and the settings when they changed. */
  onTable(table: RoutingTable): void {
    this.#table = table
    const section = this.#host.desired.mirror
    if (!sameSection(section, this.#section)) {
      this.#section = section
      this.#configure(section)
    }
    const version = this.#run?.settings.version
    this.#route = version === undefined ? undefined : table.routes.find((r) => r.version.name === version)
  }

  #configure(section: MirrorSection | null): void {
    const log = this.#host.log
    const listener = this.#host.listener
    if (section === null) {
      if (this.#run) log.info({ mirror: this.#run.settings.version }, 'mirroring stopped')
      this.#run = undefined
      listener.setTap(undefined)
      return
    }
    // Every way in (config, admin API, rollout driver, state file, peers) parsed the section with its schema, defaults
    // applied; parsing again here would load zod into every worker's boot, which competes with serving in a restart.
    const settings = compileMirror(section)
    this.#run = new MirrorRun(settings, this.#host.metrics, this.#now)
    if (!this.#stopped) listener.setTap(this.#onSent)
    log.info({ mirror: section }, `mirroring ${settings.percent}% of ${[...settings.methods]} to ${settings.version}`)
  }

  // ---- the data path (the listener's tap): cheap rejections first ----

  #copy(req: IncomingMessage, key: number, ex: Exchange): void {
    const run = this.#run
    if (run === undefined) return
    // A request served by the mirror version itself (an override) is not copied to it again.
    if (this.#route !== undefined && ex.instance.version === this.#route.version) return
    const s = run.settings
    if (!s.methods.has(req.method ?? 'GET') || !run.sampler.take(key)) return
    if (this.#copies.size >= s.maxInflight) {
      run.drop()
      return
    }
    const length = req.headers['content-length']
    // The exchange knows, for HTTP/2 too (a gRPC call has a body and no Content-Length).
    const hasBody = ex.hasBody
    if (hasBody && (s.maxBodyBytes === 0 || (length !== undefined && Number(length) > s.maxBodyBytes))) {
      run.drop()
      return
    }
    if (hasBody && (req.readableEnded || req.destroyed)) {
      run.drop()
      return
    }
    // The list the user's request was sent with (hop-by-hop left out, X-Forwarded-* added).
    const headers = ex.upstreamHeaders
    if (headers === undefined) return
    const copy = new MirrorCopy(this, run, req.method ?? 'GET', req.url ?? '/', key)
    this.#copies.add(copy)
    ex.tap = copy
    if (hasBody) this.#collectBody(req, copy, headers, s.maxBodyBytes)
    else this.#send(copy, headers, null)
  }

  /**
   * Keeps a copy of a small request body as it streams to the primary (the
   * primary's reader and this one see the same chunks); the shadow is sent
   * once the body is whole. Over the bound, or a body that never ends: the
   * copy is dropped and what was kept is let go.
   */
  #collectBody(req: IncomingMessage, copy: MirrorCopy, headers: string[], maxBytes: number): void {
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBytes) {
        chunks.push(chunk)
        return
      }
      over = true
      chunks.length = 0
      req.off('data', onData)
    }
    req.on('data', onData)
    req.once('end', () => {
      req.off('data', onData)
      if (over) this.#abandon(copy)
      else this.#send(copy, headers, Buffer.concat(chunks, size))
    })
    req.once('close', () => {
      req.off('data', onData)
      if (!req.readableEnded) this.#abandon(copy)
    })
  }

  #abandon(copy: MirrorCopy): void {
    if (!this.#copies.has(copy)) return
    copy.run.drop()
    copy.cancel()
  }

  #send(copy: MirrorCopy, headers: string[], body: Buffer | null): void {
    if (this.#outbox.length === 0) setImmediate(this.#flush)
    this.#outbox.push(copy, headers, body)
  }

  #sendOutbox(): void {
    const out = this.#outbox
    this.#outbox = []
    for (let i = 0; i < out.length; i += 3) {
      this.#sendNow(out[i] as MirrorCopy, out[i + 1] as string[], out[i + 2] as Buffer | null)
    }
    if (this.#sweep === undefined && this.#copies.size > 0) {
      this.#sweep = setInterval(this.#onSweep, SWEEP_MS)
      this.#sweep.unref()
    }
  }

  #checkDeadlines(): void {
    const now = performance.now()
    this.#copies.forEach((c) => {
      if (c.deadlineAt <= now) c.deadline()
    })
    if (this.#copies.size === 0) {
      clearInterval(this.#sweep)
      this.#sweep = undefined
    }
  }

  #sendNow(copy: MirrorCopy, headers: string[], body: Buffer | null): void {
    if (!this.#copies.has(copy)) return
    copy.run.stats.copied++
    const route = this.#route
    const instance = route === undefined ? undefined : this.#table?.chooseInstance(route, copy.key)
    const pool = instance?.pool
    if (pool === undefined) {
      copy.fail(`no usable instance in version "${copy.run.settings.version}"`)
      return
    }
    copy.send(pool, headers, body)
  }
}

/** Same settings, field by field (the state is replaced whole on every change, so identity says little). */
function sameSection(a: MirrorSection | null, b: MirrorSection | null): boolean {
  if (a === null || b === null) return a === b
  return (
    a.version === b.version &&
    a.percent === b.percent &&
    a.compare === b.compare &&
    a.timeoutMs === b.timeoutMs &&
    a.maxInflight === b.maxInflight &&
    a.maxBodyBytes === b.maxBodyBytes &&
    sameList(a.methods, b.methods) &&
    sameList(a.ignore, b.ignore)
  )
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function round(ms: number | undefined): number | null {
  return ms === undefined ? null : Math.round(ms * 1000) / 1000
}
