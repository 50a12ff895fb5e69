import { readFileSync } from 'node:fs'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { Version } from '../routing/instance.js'

/**
 * Every metric of the README's Metrics table, on a registry of its own (several
 * proxies can live in one test process). Counters and the histogram are
 * touched per request through pre-bound children; gauges are read from the
 * live objects at scrape time, so the data path never updates them.
 */

/** Edge-proxy latency buckets: 0.5 ms to 10 s. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** `sluice_rollout_phase`'s phases: every one is exposed, 1 for the current (or last) rollout's. */
export const ROLLOUT_PHASES = ['mirror', 'progressing', 'paused', 'promoted', 'rolled_back'] as const
export type RolloutPhaseName = (typeof ROLLOUT_PHASES)[number]

/** A rollout state's status and phase as `sluice_rollout_phase` names them; undefined when idle. */
export function rolloutPhaseName(status: unknown, phase: unknown): RolloutPhaseName | undefined {
  if (status === 'progressing') return phase === 'mirror' ? 'mirror' : 'progressing'
  return status === 'paused' || status === 'promoted' || status === 'rolled_back' ? status : undefined
}

export interface GaugeSources {
  versions(): readonly Version[]
  weights(): Readonly<Record<string, number>>
  rollout(): { canary: string; step: number; phase?: RolloutPhaseName | undefined } | undefined
  storeUp?(): number | undefined
  /** Processes serving the public listener (1 until there are workers). */
  workers?(): number
}

/**
 * prom-client's defaults that `promtool check metrics` rejects (gauges named
 * `_total`); the same figures stay available, by type, in
 * `nodejs_active_handles`, `nodejs_active_requests` and `nodejs_active_resources`.
 */
const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

/** The package's version, read once (package.json sits two levels above both src/metrics and dist/metrics). */
const SLUICE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version

/** Status codes are counted in a flat array per version; anything outside 0..599 lands in 599's neighbour 600. */
const CODE_SLOTS = 601

/** Per-version request figures, counted in plain arrays on the hot path and exposed at scrape time. */
interface VersionCounts {
  readonly name: string
  /** HTTP status counts of requests other than gRPC calls, which are counted in `grpc`. */
  readonly codes: Float64Array
  /** gRPC calls by HTTP status and grpc-status, keyed `status * 32 + grpcStatus`; created on the first call. */
  grpc: Map<number, number> | undefined
  /** Non-cumulative bucket counts; the last slot is +Inf. */
  readonly buckets: Float64Array
  sum: number
  count: number
}

interface RetryCount {
  readonly name: string
  n: number
}

export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'version' | 'code' | 'grpc_status'>
  readonly rollbacks: Counter<'version'>
  readonly mirrorRequests: Counter<'version' | 'outcome'>
  readonly handoffs: Counter<'version'>
  readonly outlierEjections: Counter<'version'>
  readonly gateChecks: Counter<'gate' | 'result'>
  readonly notificationsFailed: Counter
  readonly discoveryErrors: Counter<'version'>
  /** By version index; counted by `recordRetry`. */
  readonly #retries: (RetryCount | undefined)[] = []
  /** By version index. prom-client's label children hash their labels on every call; these are array stores. */
  readonly #counts: (VersionCounts | undefined)[] = []
  readonly #unrouted = new Float64Array(CODE_SLOTS)

  constructor(sources: GaugeSources, opts: { defaults?: boolean } = {}) {
    const registers = [this.registry]
    if (opts.defaults !== false) {
      collectDefaultMetrics({ register: this.registry })
      for (const name of LINT_FAILING_DEFAULTS) this.registry.removeSingleMetric(name)
    }
    const counts = this.#counts
    const retries = this.#retries
    const unrouted = this.#unrouted
    this.requests = new Counter({
      name: 'sluice_requests_total',
      help: 'Requests answered, by version and status code (499: client closed first; version "none": nothing usable); gRPC calls also by grpc_status.',
      labelNames: ['version', 'code', 'grpc_status'],
      registers,
      collect() {
        this.reset()
        for (const c of counts) {
          if (c === undefined) continue
          for (let code = 0; code < CODE_SLOTS; code++) {
            const n = c.codes[code]!
            if (n > 0) this.inc({ version: c.name, code: String(code) }, n)
          }
          if (c.grpc !== undefined)
            for (const [key, n] of c.grpc) {
              this.inc({ version: c.name, code: String(key >> 5), grpc_status: String(key & 31) }, n)
            }
        }
        for (let code = 0; code < CODE_SLOTS; code++) {
          const n = unrouted[code]!
          if (n > 0) this.inc({ version: 'none', code: String(code) }, n)
        }
      },
    })
    this.registry.registerMetric(new DurationHistogram(counts) as unknown as Histogram)
    this.rollbacks = new Counter({
      name: 'sluice_rollbacks_total',
      help: 'Rollouts rolled back, by canary version.',
      labelNames: ['version'],
      registers,
    })
    this.gateChecks = new Counter({
      name: 'sluice_gate_checks_total',
      help: 'Rollout gate checks by gate and result (pass, fail, error).',
      labelNames: ['gate', 'result'],
      registers,
    })
    this.notificationsFailed = new Counter({
      name: 'sluice_notifications_failed_total',
      help: 'Rollout notifications given up on after their retries.',
      registers,
    })
    this.mirrorRequests = new Counter({
      name: 'sluice_mirror_requests_total',
      help: 'Mirrored requests by outcome (match, mismatch, error, dropped, uncompared).',
      labelNames: ['version', 'outcome'],
      registers,
    })
    this.handoffs = new Counter({
      name: 'sluice_websocket_handoffs_total',
      help: 'WebSocket connections moved to another instance, by the version they left.',
      labelNames: ['version'],
      registers,
    })
    this.outlierEjections = new Counter({
      name: 'sluice_outlier_ejections_total',
      help: 'Instances ejected by outlier detection, by version.',
      labelNames: ['version'],
      registers,
    })
    this.discoveryErrors = new Counter({
      name: 'sluice_discovery_errors_total',
      help: 'DNS/SRV lookups that failed or answered empty while instances were known, by version.',
      labelNames: ['version'],
      registers,
    })
    new Counter({
      name: 'sluice_retries_total',
      help: 'Tries retried on another instance, by version (retries.attempts).',
      labelNames: ['version'],
      registers,
      collect() {
        this.reset()
        for (const r of retries) if (r !== undefined) this.inc({ version: r.name }, r.n)
      },
    })
    new Gauge({
      name: 'sluice_build_info',
      help: 'Always 1; the labels name the running sluice and Node.js versions.',
      labelNames: ['sluice_version', 'node_version'],
      registers,
    }).set({ sluice_version: SLUICE_VERSION, node_version: process.versions.node }, 1)
    new Gauge({
      name: 'sluice_workers',
      help: 'Processes serving the public listener.',
      registers,
      collect() {
        this.set(sources.workers?.() ?? 1)
      },
    })
    new Gauge({
      name: 'sluice_rollout_phase',
      help: 'The current or last rollout phase by canary: 1 for its phase, 0 for the others.',
      labelNames: ['canary', 'phase'],
      registers,
      collect() {
        this.reset()
        const r = sources.rollout()
        if (r?.phase === undefined) return
        for (const phase of ROLLOUT_PHASES) this.set({ canary: r.canary, phase }, phase === r.phase ? 1 : 0)
      },
    })
    new Gauge({
      name: 'sluice_inflight_requests',
      help: 'Requests in flight, by version.',
      labelNames: ['version'],
      registers,
      collect() {
        this.reset()
        for (const v of sources.versions()) this.set({ version: v.name }, v.inflight)
      },
    })
    new Gauge({
      name: 'sluice_version_weight',
      help: 'Configured weight of each version, integer percent.',
      labelNames: ['version'],
      registers,
      collect() {
        this.reset()
        const w = sources.weights()
        for (const v of sources.versions()) this.set({ version: v.name }, w[v.name] ?? 0)
      },
    })
    new Gauge({
      name: 'sluice_upstream_healthy',
      help: 'Active health of each instance (1 healthy, 0 not); upstream is the instance URL.',
      labelNames: ['version', 'upstream'],
      registers,
      collect() {
        this.reset()
        for (const v of sources.versions())
          for (const i of v.instances) this.set({ version: v.name, upstream: i.url }, i.healthy ? 1 : 0)
      },
    })
    new Gauge({
      name: 'sluice_upstream_usable',
      help: 'Whether each instance takes new work (healthy, not ejected, not draining); upstream is the instance URL.',
      labelNames: ['version', 'upstream'],
      registers,
      collect() {
        this.reset()
        for (const v of sources.versions())
          for (const i of v.instances) this.set({ version: v.name, upstream: i.url }, i.usable ? 1 : 0)
      },
    })
    new Gauge({
      name: 'sluice_websocket_connections',
      help: 'Open client WebSocket connections, by version.',
      labelNames: ['version'],
      registers,
      collect() {
        this.reset()
        for (const v of sources.versions()) this.set({ version: v.name }, v.websockets)
      },
    })
    new Gauge({
      name: 'sluice_rollout_step',
      help: 'Index of the current rollout step (-1: none or mirror phase).',
      labelNames: ['canary'],
      registers,
      collect() {
        this.reset()
        const r = sources.rollout()
        if (r) this.set({ canary: r.canary }, r.step)
      },
    })
    new Gauge({
      name: 'sluice_state_store_up',
      help: 'Whether the shared state store (Redis) is reachable; 1 for the in-process store.',
      registers,
      collect() {
        this.set(sources.storeUp?.() ?? 1)
      },
    })
  }

  /**
   * Hot path: array stores only, no label objects, no hashing. A gRPC call
   * (`grpc`) is left out of the status counts: recordGrpc counts it with
   * its grpc-status.
   */
  record(version: Version, status: number, seconds: number, grpc = false): void {
    const c = this.#countsOf(version)
    if (!grpc) c.codes[status >= 0 && status < CODE_SLOTS ? status : CODE_SLOTS - 1]!++
    let b = 0
    while (b < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[b]!) b++
    c.buckets[b]!++
    c.sum += seconds
    c.count++
  }

  /** A gRPC call's answer: `sluice_requests_total` gets a series with `grpc_status` (README "gRPC"). */
  recordGrpc(version: Version, status: number, grpcStatus: number): void {
    const c = this.#countsOf(version)
    const key = (status >= 0 && status < CODE_SLOTS ? status : CODE_SLOTS - 1) * 32 + (grpcStatus & 31)
    c.grpc ??= new Map()
    c.grpc.set(key, (c.grpc.get(key) ?? 0) + 1)
  }

  #countsOf(version: Version): VersionCounts {
    let c = this.#counts[version.index]
    if (c === undefined) {
      c = this.#counts[version.index] = {
        name: version.name,
        codes: new Float64Array(CODE_SLOTS),
        grpc: undefined,
        buckets: new Float64Array(DURATION_BUCKETS.length + 1),
        sum: 0,
        count: 0,
      }
    }
    return c
  }

  /** A try failed and is retried on another instance: an array store per version. */
  recordRetry(version: Version): void {
    const r = this.#retries[version.index]
    if (r === undefined) this.#retries[version.index] = { name: version.name, n: 1 }
    else r.n++
  }

  /** Requests the proxy answered without reaching any version. */
  recordUnrouted(status: number): void {
    this.#unrouted[status >= 0 && status < CODE_SLOTS ? status : CODE_SLOTS - 1]!++
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}

/**
 * sluice_request_duration_seconds, exposed from the per-version arrays at
 * scrape time in prom-client's metric-object form (the registry only calls
 * `get()`), so observing a request never touches prom-client.
 */
class DurationHistogram {
  readonly name = 'sluice_request_duration_seconds'
  readonly help = 'Time from request to the end of the response, by version.'
  readonly type = 'histogram'
  readonly aggregator = 'sum'

  constructor(readonly counts: readonly (VersionCounts | undefined)[]) {}

  async get() {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = []
    for (const c of this.counts) {
      if (c === undefined) continue
      let cumulative = 0
      for (let b = 0; b < DURATION_BUCKETS.length; b++) {
        cumulative += c.buckets[b]!
        values.push({ value: cumulative, labels: { le: DURATION_BUCKETS[b]!, version: c.name }, metricName: `${this.name}_bucket` })
      }
      values.push({ value: c.count, labels: { le: '+Inf', version: c.name }, metricName: `${this.name}_bucket` })
      values.push({ value: c.sum, labels: { version: c.name }, metricName: `${this.name}_sum` })
      values.push({ value: c.count, labels: { version: c.name }, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  reset(): void {}
}
