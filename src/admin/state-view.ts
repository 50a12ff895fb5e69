import { figuresFromSlices, type SliceSnapshot } from '../analysis/slices.js'
import type { Sluice } from '../lifecycle/sluice.js'
import type { MirrorView } from '../mirror/mirror.js'
import type { Version } from '../routing/instance.js'
import { rolloutView } from '../rollout/rollout-view.js'

/** With workers: their summed slices, and `workers`/`restart` for the view. */
export interface WorkersView {
  slices(version: Version): SliceSnapshot[]
  view(): Record<string, unknown>
}

/** One process serving: itself is the one worker, and it cannot replace itself. */
const STARTED_AT = new Date(Date.now() - process.uptime() * 1000).toISOString()

/** What every state-changing admin route answers with: the state view as of now. */
export type StateView = () => Record<string, unknown>

/**
 * The JSON of GET /v1/state (README, Admin API), built from the live
 * objects: the core, and the mirror's live figures where this process
 * mirrors (`mirror: null` otherwise).
 */
export function stateView(
  s: Sluice,
  mirror?: { view(): MirrorView | null },
  workers?: WorkersView,
): Record<string, unknown> {
  const desired = s.desired
  const versions: Record<string, unknown> = {}
  const analysis: Record<string, unknown> = {}
  for (const v of s.versions) {
    versions[v.name] = {
      draining: v.draining,
      inflight: v.inflight,
      websockets: v.websockets,
      instances: v.instances.map((i) => ({
        url: i.url,
        source: s.sourceOf(i),
        healthy: i.healthy,
        draining: i.draining || v.draining,
        ejected: i.ejected,
        ejectedUntil: i.ejected ? new Date(i.ejectedUntil).toISOString() : null,
        usable: i.usable,
        inflight: i.inflight,
        websockets: i.websockets,
      })),
    }
    const w = s.outcomes.window(v)
    const slices = workers?.slices(v)
    const f = slices ? figuresFromSlices(slices) : w.figures()
    // Over at least a second: a window a few milliseconds old would turn one request into a spike.
    const covered = Math.max(1000, slices ? slicesCoveredMs(slices, s.config.analysis.windowMs) : w.coveredMs())
    analysis[v.name] = {
      requests: f.requests,
      requestsPerSec: round((f.requests * 1000) / covered, 2),
      errors: f.errors,
      requestsTotal: v.requestsTotal,
      errorsTotal: v.errorsTotal,
      errorRate: round(f.errorRate, 6),
      p50Ms: round(f.p50Ms, 3),
      p95Ms: round(f.p95Ms, 3),
      p99Ms: round(f.p99Ms, 3),
    }
  }
  return {
    revision: desired.revision,
    status: s.status,
    ready: s.ready,
    weights: desired.weights,
    versions,
    rollout: desired.rollout
      ? rolloutView(desired.rollout)
      : { status: 'idle', baseline: null, canary: null, step: null, reason: null },
    analysis,
    mirror: mirror?.view() ?? null,
    store: { kind: s.store.kind, up: s.store.up, leader: s.store.leader, id: s.store.id },
    ...(workers?.view() ?? {
      workers: [{ id: 0, pid: process.pid, startedAt: STARTED_AT, generation: 1 }],
      restart: { status: 'idle', generation: 1 },
    }),
    // Every admin answer carries the state view, so a change made during an outage is answered with this.
    ...(s.store.up
      ? {}
      : {
          warning:
            'state store unreachable: changes apply to this proxy only and are reconciled by revision when it returns',
        }),
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** The time the summed slices span, up to the window. */
function slicesCoveredMs(slices: readonly SliceSnapshot[], windowMs: number): number {
  const first = slices[0]
  return first === undefined ? 0 : Math.min(windowMs, Date.now() - first.startMs)
}
