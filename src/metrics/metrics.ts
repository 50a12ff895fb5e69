import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { Version } from '../routing/instance.js'

/**
 * Every metric of CONTRACT section 5, on a registry of its own (several
 * proxies can live in one test process). Counters and the histogram are
 * touched per request through pre-bound children; gauges are read from the
 * live objects at scrape time, so the data path never updates them.
 */

/** Edge-proxy latency buckets: 0.5 ms to 10 s. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export interface GaugeSources {
  versions(): readonly Version[]
  weights(): Readonly<Record<string, number>>
  rollout(): { canary: string; step: number } | undefined
  storeUp?(): number | undefined
}

type CounterChild = { inc(n?: number): void }
type HistogramChild = { observe(v: number): void }

export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'version' | 'code'>
  readonly duration: Histogram<'version'>
  readonly rollbacks: Counter<'version'>
  readonly mirrorRequests: Counter<'version' | 'outcome'>
  readonly handoffs: Counter<'version'>
  /** Per version index: children by status code, created on first use. */
  readonly #codeChildren: (CounterChild | undefined)[][] = []
  readonly #durationChildren: (HistogramChild | undefined)[] = []

  constructor(sources: GaugeSources, opts: { defaults?: boolean } = {}) {
    const registers = [this.registry]
    if (opts.defaults !== false) collectDefaultMetrics({ register: this.registry })
    this.requests = new Counter({
      name: 'sluice_requests_total',
      help: 'Requests answered, by version and status code (499: client closed first).',
      labelNames: ['version', 'code'],
      registers,
    })
    this.duration = new Histogram({
      name: 'sluice_request_duration_seconds',
      help: 'Time from request to the end of the response, by version.',
      labelNames: ['version'],
      buckets: DURATION_BUCKETS,
      registers,
    })
    this.rollbacks = new Counter({
      name: 'sluice_rollbacks_total',
      help: 'Rollouts rolled back, by canary version.',
      labelNames: ['version'],
      registers,
    })
    this.mirrorRequests = new Counter({
      name: 'sluice_mirror_requests_total',
      help: 'Mirrored requests by outcome (match, mismatch, error, dropped).',
      labelNames: ['version', 'outcome'],
      registers,
    })
    this.handoffs = new Counter({
      name: 'sluice_websocket_handoffs_total',
      help: 'WebSocket connections moved to another instance, by the version they left.',
      labelNames: ['version'],
      registers,
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
      help: 'Active health of each instance (1 healthy, 0 not).',
      labelNames: ['version', 'instance'],
      registers,
      collect() {
        this.reset()
        for (const v of sources.versions())
          for (const i of v.instances) this.set({ version: v.name, instance: i.url }, i.healthy ? 1 : 0)
      },
    })
    new Gauge({
      name: 'sluice_upstream_usable',
      help: 'Whether each instance takes new work (healthy, not ejected, not draining).',
      labelNames: ['version', 'instance'],
      registers,
      collect() {
        this.reset()
        for (const v of sources.versions())
          for (const i of v.instances) this.set({ version: v.name, instance: i.url }, i.usable ? 1 : 0)
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

  /** Hot path: two array reads and two increments. */
  record(version: Version, status: number, seconds: number): void {
    const idx = version.index
    let codes = this.#codeChildren[idx]
    if (codes === undefined) codes = this.#codeChildren[idx] = []
    let c = codes[status]
    if (c === undefined) c = codes[status] = this.requests.labels(version.name, String(status))
    c.inc()
    let d = this.#durationChildren[idx]
    if (d === undefined) d = this.#durationChildren[idx] = this.duration.labels(version.name)
    d.observe(seconds)
  }

  /** Requests the proxy answered without reaching any version. */
  recordUnrouted(status: number): void {
    this.requests.labels('none', String(status)).inc()
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
