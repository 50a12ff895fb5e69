import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import { AggregatorRegistry, Counter, type Registry } from 'prom-client'
import { addSparse, BUCKETS } from '../analysis/histogram.js'
import { mergeSlices, type SliceSnapshot } from '../analysis/slices.js'
import type { Config } from '../config/load.js'
import type { Discovered } from '../discovery/membership.js'
import { AdminError } from '../errors.js'
import type { OutlierDetector } from '../health/outlier.js'
import type { Metrics } from '../metrics/metrics.js'
import type { MirrorView } from '../mirror/mirror.js'
import { countsP95, mirrorFigures } from '../mirror/mirror-stats.js'
import { type MismatchEntry, MismatchLog } from '../mirror/mismatch-log.js'
import type { MirrorFigures } from '../rollout/rollout-machine.js'
import { findInstance, type Version } from '../routing/instance.js'
import type { ChangeMeta } from '../state/control.js'
import type { DesiredState } from '../state/types.js'
import {
  type FromWorker,
  type InstanceFacts,
  isFromWorker,
  type ReportMessage,
  type StateMessage,
  type ToWorker,
} from './worker-messages.js'

/** One metric as `getMetricsAsJSON` gives it: what workers send and `AggregatorRegistry.aggregate` sums. */
export type MetricJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number]

/** What the pool needs of the primary's core. */
export interface PoolHost {
  readonly config: Config
  readonly log: Logger
  readonly versions: readonly Version[]
  readonly desired: DesiredState
  readonly metrics: Metrics
  /** Decides the workers' ejections for the whole proxy (and sweeps the peer counts they report). */
  readonly outlier: Pick<OutlierDetector, 'confirm'>
  workerCount: number
  discoveredNow(): Record<string, Discovered>
  reload(meta: ChangeMeta, action: 'reload' | 'restart'): Promise<DesiredState>
}

/** The metrics workers count (the rest are the primary's own); summed over workers, retired ones included. */
export const WORKER_SUMMED: ReadonlySet<string> = new Set([
  'sluice_requests_total',
  'sluice_request_duration_seconds',
  'sluice_retries_total',
  'sluice_websocket_handoffs_total',
  'sluice_mirror_requests_total',
])

/** The `workers` setting as a count. */
export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? availableParallelism() : setting
}

/** Longest wait for every worker to acknowledge a change before the admin answers anyway (and says so in the log). */
const ACK_TIMEOUT_MS = 5_000
/** A worker that is not serving this long after it was started is given up on. */
const START_TIMEOUT_MS = 30_000
/** Replacements of a worker that keeps crashing wait longer each time, up to this. */
const MAX_BACKOFF_MS = 5_000
/** A worker that lived this long before crashing is replaced at once. */
const STABLE_MS = 10_000
const SCRAPE_TIMEOUT_MS = 2_000
/**
 * A rolling restart starts the next worker only once the one it retired has
 * exited (its clients reconnected onto the workers serving) or this long
 * passed (WebSockets may keep it for drain.timeoutMs, idle connections for clientIdleMs), and then after
 * ROLL_SETTLE_MS: a booting worker takes a core for a while, and booting it
 * while clients are still reconnecting stacks the two on the same moment.
 */
const ROLL_EXIT_WAIT_MS = 2_000
const ROLL_SETTLE_MS = 250

interface Member {
  readonly worker: Worker
  readonly generation: number
  readonly startedAt: number
  serving: boolean
  retiring: boolean
  acked: number
  report: ReportMessage | undefined
  /** The worker's counters as last scraped: kept if it is killed, so /metrics never goes down. */
  lastMetrics: MetricJson[] | undefined
  readonly servingNow: Promise<void>
  readonly exited: Promise<void>
  markServing(): void
  failStart(err: Error): void
}

interface SettleWaiter {
  readonly seq: number
  resolve(): void
}

interface RetiredSlices {
  readonly until: number
  readonly slices: Record<string, SliceSnapshot[]>
}

/**
 * The primary's workers (README "Workers and self-upgrade"): N processes of
 * node:cluster serving the public listener, with the primary accepting and
 * handing connections round-robin. The primary keeps the one desired state;
 * after every change it sends each worker everything its routing table is a
 * function of (desired state, config, discovered addresses, health), and
 * `settled` resolves once every serving worker acknowledged it, so an admin
 * answer is only sent when every worker routes by the change. Workers report
 * their analysis slices and live counts every analysis interval; the primary
 * judges rollouts on their sum and sums their counters on /metrics, keeping
 * what retired and killed workers counted. The workers' outlier ejections
 * are decided here for the whole proxy (health/outlier.ts `confirm`) and go
 * back out with the state; their mirror mismatches are listed here.
 */
export class WorkerPool {
  readonly #host: PoolHost
  readonly #log: Logger
  readonly #members = new Map<number, Member>()
  readonly #restarts: Counter
  #count: number
  #seq = 0
  #settleWaiters: SettleWaiter[] = []
  #generation = 1
  #restarting: { generation: number } | undefined
  #stopping = false
  /** Every first worker served: from then on a dead worker is replaced (before, the start fails). */
  #started = false
  #backoffMs = 0
  #scrapeId = 0
  readonly #scrapes = new Map<number, (json: MetricJson[]) => void>()
  /** Counters of workers that are gone, summed. */
  #retiredMetrics: MetricJson[] = []
  #retiring: Promise<void> = Promise.resolve()
  #retiredSlices: RetiredSlices[] = []
  readonly #retiredTotals = new Map<string, [number, number]>()
  /** The workers' mismatches (they mirror; the primary copies nothing), in time order. */
  readonly #mismatches = new MismatchLog()
  port = 0

  constructor(host: PoolHost, count: number) {
    this.#host = host
    this.#log = host.log
    this.#count = count
    this.#restarts = new Counter({
      name: 'sluice_worker_restarts_total',
      help: 'Workers replaced after they died (not by a self-upgrade).',
      registers: [host.metrics.registry],
    })
  }

  /** Starts the workers and resolves with the public port once all serve. */
  async start(): Promise<number> {
    // Round-robin in the primary: measured fastest and fair here (README "Workers and self-upgrade").
    if (process.env['NODE_CLUSTER_SCHED_POLICY'] === undefined) cluster.schedulingPolicy = cluster.SCHED_RR
    cluster.setupPrimary({ serialization: 'advanced' })
    const starting: Promise<void>[] = []
    for (let i = 0; i < this.#count; i++) starting.push(this.#spawn(this.#generation).servingNow)
    await Promise.all(starting)
    this.#started = true
    this.#host.workerCount = this.#servingCount()
    return this.port
  }

  /** Sends the state as it is now to every worker; called after every routing rebuild in the primary. */
  broadcast(): void {
    if (this.#members.size === 0) return
    const msg = this.#stateMessage(++this.#seq)
    for (const m of this.#members.values()) this.#send(m, msg)
  }

  /** Resolves once every serving worker applied the latest state (bounded by ACK_TIMEOUT_MS). */
  settled(): Promise<void> {
    const seq = this.#seq
    if (this.#allAcked(seq)) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#log.warn({ seq }, 'workers did not acknowledge a change in time: answering anyway')
        done()
      }, ACK_TIMEOUT_MS)
      const done = () => {
        clearTimeout(timer)
        resolve()
      }
      this.#settleWaiters.push({ seq, resolve: done })
    })
  }

  /** A version's analysis slices summed over every worker (and recently retired ones). */
  slices(version: Version): SliceSnapshot[] {
    const lists: SliceSnapshot[][] = []
    for (const m of this.#members.values()) {
      const s = m.report?.slices[version.name]
      if (s !== undefined) lists.push(s)
    }
    const now = Date.now()
    this.#retiredSlices = this.#retiredSlices.filter((r) => r.until > now)
    for (const r of this.#retiredSlices) {
      const s = r.slices[version.name]
      if (s !== undefined) lists.push(s)
    }
    return lists.length === 1 ? lists[0]! : mergeSlices(...lists)
  }

  /** A rollout's mirror phase figures since `fromMs`, summed over the workers that mirror. */
  mirrorFigures(fromMs: number): MirrorFigures {
    const shadow = new Uint32Array(BUCKETS)
    const primary = new Uint32Array(BUCKETS)
    let judged = 0
    let bad = 0
    for (const m of this.#members.values()) {
      const phase = m.report?.mirror?.phase
      if (phase === undefined || phase.fromMs !== fromMs) continue
      judged += phase.judged
      bad += phase.bad
      addSparse(shadow, 0, phase.shadow)
      addSparse(primary, 0, phase.primary)
    }
    return mirrorFigures(judged, bad, shadow, primary)
  }

  /** `/v1/state.mirror` with the workers' figures summed in place of the primary's own (it copies nothing). */
  mirrorView(own: MirrorView | null): MirrorView | null {
    if (own === null) return null
    const sum = { copied: 0, dropped: 0, matched: 0, mismatches: 0, errors: 0, uncompared: 0 }
    const shadow = new Uint32Array(BUCKETS)
    const primary = new Uint32Array(BUCKETS)
    for (const m of this.#members.values()) {
      const r = m.report?.mirror
      if (r === undefined) continue
      for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += r.totals[k]
      addSparse(shadow, 0, r.shadow)
      addSparse(primary, 0, r.primary)
    }
    return { ...own, ...sum, shadowP95Ms: countsP95(shadow), primaryP95Ms: countsP95(primary) }
  }

  /** GET /v1/mirror/mismatches: every worker's, oldest first (up to one analysis interval late). */
  mismatches(): MismatchEntry[] {
    return this.#mismatches.list()
  }

  /** `/v1/state.workers` and `/v1/state.restart`. */
  view(): Record<string, unknown> {
    return {
      workers: [...this.#members.entries()]
        .filter(([, m]) => !m.retiring)
        .map(([id, m]) => ({
          id,
          pid: m.worker.process.pid ?? null,
          startedAt: new Date(m.startedAt).toISOString(),
          generation: m.generation,
        })),
      restart: { status: this.#restarting ? 'running' : 'idle', generation: this.#generation },
    }
  }

  /**
   * Self-upgrade: applies the config on disk (refused, with its problems,
   * when invalid; nothing changes then), then replaces every worker one at a
   * time in the background. Resolves once the config is applied.
   */
  async restart(meta: ChangeMeta): Promise<void> {
    if (this.#restarting) throw new AdminError(409, 'SLUICE_RESTART_RUNNING', 'a restart is already running')
    if (this.#stopping) throw new AdminError(409, 'SLUICE_STOPPING', 'the proxy is stopping')
    const generation = this.#generation + 1
    this.#restarting = { generation }
    try {
      await this.#host.reload(meta, 'restart')
    } catch (err) {
      this.#restarting = undefined
      throw err
    }
    this.#generation = generation
    this.#log.info({ generation }, 'restart: replacing every worker, one at a time')
    void this.#roll(generation).then(
      () => this.#log.info({ generation }, 'restart done'),
      (err: unknown) => this.#log.error({ err, generation }, 'restart stopped: a new worker did not start'),
    ).finally(() => {
      this.#restarting = undefined
    })
  }

  async #roll(generation: number): Promise<void> {
    const old = [...this.#members.values()].filter((m) => m.generation < generation && !m.retiring)
    for (const [i, m] of old.entries()) {
      if (this.#stopping) return
      if (i > 0) await this.#settleAfter(old[i - 1]!)
      if (this.#stopping) return
      const next = this.#spawn(generation)
      // The new one serves before the old one stops accepting: no connection is ever refused.
      await next.servingNow
      if (this.#stopping) return
      if (m.worker.isDead()) continue
      m.retiring = true
      this.#log.info({ worker: m.worker.id, workerPid: m.worker.process.pid, generation: m.generation }, 'worker retiring')
      this.#send(m, { t: 'retire' })
      this.#host.workerCount = this.#servingCount()
    }
  }

  /** Waits for a retired worker to exit (bounded by ROLL_EXIT_WAIT_MS), then ROLL_SETTLE_MS. */
  async #settleAfter(m: Member): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([m.exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, ROLL_EXIT_WAIT_MS)))])
    clearTimeout(timer)
    await new Promise<void>((resolve) => setTimeout(resolve, ROLL_SETTLE_MS))
  }

  /** drain.delayMs began: workers answer with `Connection: close`. */
  beginStopping(): void {
    for (const m of this.#members.values()) this.#send(m, { t: 'stopping' })
  }

  /** Stops every worker gracefully; those still running after drain.timeoutMs plus a grace are killed. */
  async stop(): Promise<void> {
    this.#stopping = true
    const exits = [...this.#members.values()].map(
      (m) =>
        new Promise<void>((resolve) => {
          if (m.worker.isDead()) {
            resolve()
            return
          }
          m.worker.once('exit', () => resolve())
          this.#send(m, { t: 'stop' })
        }),
    )
    const all = Promise.all(exits)
    const grace = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, this.#host.config.drain.timeoutMs + 5_000)
      t.unref()
      void all.then(() => {
        clearTimeout(t)
        resolve()
      })
    })
    await grace
    for (const m of this.#members.values()) if (!m.worker.isDead()) m.worker.process.kill('SIGKILL')
  }

  /** /metrics: the primary's own metrics with every worker's counters summed in, retired ones included. */
  async metricsText(): Promise<string> {
    const own = await this.#host.metrics.registry.getMetricsAsJSON()
    const members = [...this.#members.values()].filter((m) => !m.worker.isDead())
    const live = await Promise.all(members.map((m) => this.#scrape(m)))
    // A worker that left meanwhile is counted in the retired sum, once it is folded in: never twice, never not.
    let chain: Promise<void>
    do {
      chain = this.#retiring
      await chain
    } while (chain !== this.#retiring)
    const lists: MetricJson[][] = [own, this.#retiredMetrics]
    live.forEach((json, i) => {
      if (json !== undefined && this.#members.get(members[i]!.worker.id) === members[i]) lists.push(json)
    })
    return AggregatorRegistry.aggregate(lists).metrics()
  }

  #scrape(m: Member): Promise<MetricJson[] | undefined> {
    const id = ++this.#scrapeId
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#scrapes.delete(id)
        resolve(m.lastMetrics)
      }, SCRAPE_TIMEOUT_MS)
      this.#scrapes.set(id, (json) => {
        clearTimeout(timer)
        m.lastMetrics = json
        resolve(json)
      })
      if (!this.#send(m, { t: 'metrics', id })) {
        clearTimeout(timer)
        this.#scrapes.delete(id)
        resolve(m.lastMetrics)
      }
    })
  }

  #spawn(generation: number): Member {
    const worker = cluster.fork({ SLUICE_WORKER_GENERATION: String(generation) })
    let markServing!: () => void
    let failStart!: (err: Error) => void
    const servingNow = new Promise<void>((resolve, reject) => {
      markServing = resolve
      failStart = reject
    })
    let markExited!: () => void
    const exited = new Promise<void>((resolve) => (markExited = resolve))
    const member: Member = {
      worker,
      generation,
      startedAt: Date.now(),
      serving: false,
      retiring: false,
      acked: 0,
      report: undefined,
      lastMetrics: undefined,
      servingNow,
      exited,
      markServing,
      failStart,
    }
    servingNow.catch(() => {})
    const startTimer = setTimeout(() => {
      failStart(new Error(`worker ${worker.id} did not serve within ${START_TIMEOUT_MS} ms`))
      worker.process.kill('SIGKILL')
    }, START_TIMEOUT_MS)
    this.#members.set(worker.id, member)
    worker.on('message', (m: unknown) => {
      if (isFromWorker(m)) this.#onMessage(member, m, startTimer)
    })
    worker.on('error', (err) => this.#log.warn({ err, worker: worker.id }, 'worker channel error'))
    worker.on('exit', (code, signal) => {
      clearTimeout(startTimer)
      this.#onExit(worker.id, member, code, signal)
      markExited()
    })
    return member
  }

  #onMessage(m: Member, msg: FromWorker, startTimer: NodeJS.Timeout): void {
    switch (msg.t) {
      case 'hello':
        this.#send(m, this.#stateMessage(this.#seq))
        return
      case 'serving':
        clearTimeout(startTimer)
        m.serving = true
        this.port = msg.port
        this.#log.info(
          { worker: m.worker.id, workerPid: m.worker.process.pid, generation: m.generation, startMs: Date.now() - m.startedAt },
          'worker serving',
        )
        m.markServing()
        this.#host.workerCount = this.#servingCount()
        this.#checkSettled()
        return
      case 'ack':
        if (msg.seq > m.acked) m.acked = msg.seq
        this.#checkSettled()
        return
      case 'report':
        this.#takeReport(m, msg)
        this.#applyReports()
        return
      case 'ejected': {
        const i = findInstance(this.#host.versions, msg.url)
        if (i === undefined || !this.#host.outlier.confirm(i, msg.until, { ...msg.why, worker: m.worker.id }))
          this.#send(m, { t: 'reinstate', url: msg.url })
        return
      }
      case 'metrics':
        this.#scrapes.get(msg.id)?.(msg.json as MetricJson[])
        this.#scrapes.delete(msg.id)
        return
      case 'final':
        m.lastMetrics = msg.json as MetricJson[]
        this.#takeReport(m, msg.report)
        return
    }
  }

  #onExit(id: number, m: Member, code: number | null, signal: string | null): void {
    this.#members.delete(id)
    this.#retire(m)
    this.#host.workerCount = this.#servingCount()
    this.#checkSettled()
    if (!m.serving) m.failStart(new Error(`worker ${id} exited (${signal ?? code}) before serving`))
    if (this.#stopping || m.retiring || !this.#started) {
      this.#log.info({ worker: id, workerPid: m.worker.process.pid, code, signal }, 'worker exited')
      return
    }
    // Died on its own: its in-flight requests are lost, nothing else. Replace it (README "Workers and self-upgrade").
    this.#restarts.inc()
    const lived = Date.now() - m.startedAt
    this.#backoffMs = lived >= STABLE_MS ? 0 : Math.min(MAX_BACKOFF_MS, Math.max(100, this.#backoffMs * 2))
    this.#log.error(
      { worker: id, workerPid: m.worker.process.pid, code, signal, replaceInMs: this.#backoffMs },
      'worker died: replacing it',
    )
    const t = setTimeout(() => {
      if (!this.#stopping) this.#spawn(this.#generation)
    }, this.#backoffMs)
    t.unref()
  }

  /** A worker's report: kept as its latest figures; what it counted since its last one is added up here. */
  #takeReport(m: Member, r: ReportMessage): void {
    m.report = r
    if (r.mismatches !== undefined) this.#mismatches.merge(r.mismatches)
    if (this.#host.config.outlier.peers === undefined) return
    // The primary's peer sweep judges these sums (and zeroes them each interval).
    for (const [url, , , requests, failures] of r.instances) {
      if (requests === 0) continue
      const i = findInstance(this.#host.versions, url)
      if (i === undefined) continue
      i.windowRequests += requests
      i.windowFailures += failures
    }
  }

  /** Folds a gone worker's counters, totals and recent slices into the primary's keeping. */
  #retire(m: Member): void {
    const last = m.lastMetrics
    if (last !== undefined) {
      // One after the other, so two workers leaving at once never sum onto the same old total.
      this.#retiring = this.#retiring.then(async () => {
        this.#retiredMetrics = await AggregatorRegistry.aggregate([this.#retiredMetrics, last]).getMetricsAsJSON()
      })
    }
    if (m.report !== undefined) {
      this.#retiredSlices.push({ until: Date.now() + this.#host.config.analysis.windowMs, slices: m.report.slices })
      for (const [name, [requests, errors]] of Object.entries(m.report.versions)) {
        const t = this.#retiredTotals.get(name) ?? [0, 0]
        this.#retiredTotals.set(name, [t[0] + requests, t[1] + errors])
      }
      m.report = undefined
    }
    this.#applyReports()
  }

  /** The workers' live counts onto the primary's versions and instances (/v1/state, gauges). */
  #applyReports(): void {
    const inst = new Map<string, [number, number]>()
    const vers = new Map<string, [number, number, number, number]>()
    for (const [name, t] of this.#retiredTotals) vers.set(name, [t[0], t[1], 0, 0])
    for (const m of this.#members.values()) {
      const r = m.report
      if (r === undefined) continue
      for (const [name, v] of Object.entries(r.versions)) {
        const acc = vers.get(name) ?? [0, 0, 0, 0]
        for (let i = 0; i < 4; i++) acc[i]! += v[i]!
        vers.set(name, acc)
      }
      for (const [url, inflight, websockets] of r.instances) {
        const acc = inst.get(url) ?? [0, 0]
        acc[0] += inflight
        acc[1] += websockets
        inst.set(url, acc)
      }
    }
    for (const v of this.#host.versions) {
      const f = vers.get(v.name) ?? [0, 0, 0, 0]
      v.requestsTotal = f[0]
      v.errorsTotal = f[1]
      v.inflight = f[2]
      v.websockets = f[3]
      for (const i of v.instances) {
        const c = inst.get(i.url)
        i.inflight = c?.[0] ?? 0
        i.websockets = c?.[1] ?? 0
      }
    }
  }

  #stateMessage(seq: number): StateMessage {
    const health: InstanceFacts[] = []
    for (const v of this.#host.versions)
      for (const i of v.instances) health.push([i.url, i.healthy, i.probed, i.usableSince, i.ejectedUntil])
    return {
      t: 'state',
      seq,
      config: this.#host.config,
      desired: this.#host.desired,
      discovered: this.#host.discoveredNow(),
      health,
    }
  }

  #send(m: Member, msg: ToWorker): boolean {
    if (m.worker.isDead() || !m.worker.isConnected()) return false
    try {
      m.worker.send(msg)
      return true
    } catch (err) {
      this.#log.warn({ err, worker: m.worker.id }, 'could not reach a worker')
      return false
    }
  }

  #servingCount(): number {
    let n = 0
    for (const m of this.#members.values()) if (m.serving && !m.retiring && !m.worker.isDead()) n++
    return n
  }

  #allAcked(seq: number): boolean {
    for (const m of this.#members.values()) if (m.serving && !m.worker.isDead() && m.acked < seq) return false
    return true
  }

  #checkSettled(): void {
    if (this.#settleWaiters.length === 0) return
    const waiting: SettleWaiter[] = []
    for (const w of this.#settleWaiters) {
      if (this.#allAcked(w.seq)) w.resolve()
      else waiting.push(w)
    }
    this.#settleWaiters = waiting
  }
}
