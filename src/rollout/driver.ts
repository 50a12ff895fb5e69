import type { SliceSnapshot } from '../analysis/slices.js'
import type { Verdict } from '../analysis/verdict.js'
import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import { mirrorSchema } from '../config/schema.js'
import { RolloutInvalidError } from '../errors.js'
import type { Outcomes } from '../lifecycle/outcomes.js'
import type { Metrics } from '../metrics/metrics.js'
import type { Version } from '../routing/instance.js'
import type { Control } from '../state/control.js'
import type { RolloutRecord, StateStore } from '../state/store.js'
import type { DesiredState, MirrorSection, RolloutCommand } from '../state/types.js'
import { feedFigures, type RolloutFigures, startFigures } from './rollout-figures.js'
import {
  type GateCheck,
  gatesDue,
  type MirrorFigures,
  type RolloutEvent,
  type RolloutTransition,
  transition,
  where,
} from './rollout-machine.js'
import { buildReport, type RolloutReport } from './rollout-report.js'
import { type DeployWindow } from './deploy-window.js'
import { checkPrometheus } from './gate-prometheus.js'
import { checkWebhook } from './gate-webhook.js'
import type { Gate, NotifyTarget } from './gates-schema.js'
import { Notifier } from './notifier.js'
import { notifyEvents } from './rollout-events.js'
import { rolloutView } from './rollout-view.js'
import { idleRollout, isActive, type OnBreach, type RolloutState, type RolloutStep } from './rollout-state.js'
import { rolloutVerdict } from './rollout-verdict.js'

/** What an operator asks for; missing fields come from the config's `rollout`. */
export interface RolloutSpec {
  canary?: string
  baseline?: string
  steps?: readonly RolloutStep[]
  onBreach?: OnBreach
  gates?: readonly Gate[]
  gateTimeoutMs?: number
  windows?: readonly DeployWindow[]
  notify?: readonly NotifyTarget[]
}

/** What the driver needs of a proxy (the core has all of it). `config` is read on every use: a reload replaces it. */
export interface RolloutHost {
  readonly config: Pick<Config, 'rollout' | 'analysis' | 'mirror'>
  readonly desired: DesiredState
  readonly store: StateStore
  readonly control: Pick<Control, 'change'>
  readonly versions: readonly Version[]
  findVersion(name: string): Version | undefined
  readonly outcomes: Pick<Outcomes, 'window' | 'windowOptions'>
  readonly metrics: Pick<Metrics, 'gateChecks' | 'rollbacks' | 'notificationsFailed'>
  readonly log: Logger
}

/** How long a gate may keep failing after a step's hold before it counts as a breach, unless told. */
export const DEFAULT_GATE_TIMEOUT_MS = 1_800_000

export interface RolloutDriverOptions {
  /** Clock of the rollout's holds and times; the windows keep their own. */
  now?: () => number
  /**
   * The slices a version is judged on. This proxy's own window by default;
   * several proxies sharing a store will pass the slices merged over all.
   */
  slices?: (version: Version) => SliceSnapshot[] | Promise<SliceSnapshot[]>
  /** Notification retry waits (1, 2, 4 s unless told). */
  notifyRetryDelaysMs?: readonly number[]
  /** The shadow figures a mirror phase is judged on; without it a mirror phase sees none. */
  mirror?: { figuresSince(fromMs: number): MirrorFigures }
}

const NO_MIRROR = {
  figuresSince: (): MirrorFigures => ({ copied: 0, mismatches: 0, shadowP95Ms: null, primaryP95Ms: null }),
}

/** One archived rollout: its report plus the raw totals a later driver carries on from. */
type StoredRecord = RolloutReport & { totals?: RolloutFigures }

/** Thrown inside a change plan when the rollout moved since the transition was computed. */
class StaleRollout extends Error {}

const MAX_STALE_RETRIES = 4
const HISTORY_LIMIT = 50

/**
 * Runs rollouts on a live proxy: once per `analysis.intervalMs` it judges
 * the canary against its baseline on the newest window figures, feeds the
 * verdict to the pure state machine and applies whatever the machine wants
 * (weights, mirroring, the rollout state) through `control.change`, the one
 * path every operator change takes. Rollout state and weights move in one
 * commit, so the audit entry carries the reason with the weights before and
 * after, and a peer never sees one without the other. Operator commands
 * (start, pause, resume, promote, abort) go through the same function.
 *
 * A transition is computed on the state as read, then committed only if the
 * stored rollout has the same revision (else it is recomputed): a verdict
 * computed before an operator's pause can never undo the pause.
 */
export class RolloutDriver {
  readonly #s: RolloutHost
  readonly #now: () => number
  readonly #mirror: { figuresSince(fromMs: number): MirrorFigures }
  readonly #slices: (version: Version) => SliceSnapshot[] | Promise<SliceSnapshot[]>
  #timer: NodeJS.Timeout | undefined
  #ticking: Promise<void> | undefined
  #stopped = false
  /** Totals of the rollout this driver follows, by its id. */
  #figures: { id: string; figures: RolloutFigures } | undefined
  #saves: Promise<void> = Promise.resolve()
  readonly #notifier: Notifier
  /** The rollout state notifications were last derived from. */
  #seen: RolloutState | undefined

  constructor(sluice: RolloutHost, opts: RolloutDriverOptions = {}) {
    this.#s = sluice
    this.#now = opts.now ?? Date.now
    this.#mirror = opts.mirror ?? NO_MIRROR
    this.#slices = opts.slices ?? ((v) => sluice.outcomes.window(v).exportSlices())
    this.#notifier = new Notifier({
      log: sluice.log,
      onFailed: () => sluice.metrics.notificationsFailed.inc(),
      ...(opts.notifyRetryDelaysMs && { retryDelaysMs: opts.notifyRetryDelaysMs }),
    })
  }

  /** The stored rollout state (idle when none ever ran). */
  get state(): RolloutState {
    return rolloutOf(this.#s.desired)
  }

  /** Starts the periodic verdicts, and the config's rollout when `rollout.autoStart` asks for it. */
  async start(): Promise<void> {
    if (this.#stopped || this.#timer) return
    let cur = this.state
    this.#seen = cur
    // Before the first verdict, which must not judge a hold that began before the restart.
    if (this.#s.store.restored && cur.status === 'progressing') cur = await this.#holdAgain(cur)
    this.#schedule()
    const r = this.#s.config.rollout
    // A shared store may already hold this rollout (another proxy started it,
    // or it ended before this proxy restarted): never start it twice.
    const ranBefore = cur.canary === r?.canary && cur.baseline === r?.baseline
    if (r?.autoStart && !isActive(cur) && !ranBefore) {
      try {
        await this.begin({}, { source: 'rollout', actor: null })
      } catch (err) {
        this.#s.log.error({ err }, 'rollout.autoStart failed')
      }
    }
  }

  /**
   * A rollout this process loaded from its state file after a restart goes
   * on at its step; its hold starts again, as after a resume: the analysis
   * windows start empty, so the time before the restart proves nothing.
   */
  async #holdAgain(state: RolloutState): Promise<RolloutState> {
    const now = this.#now()
    const next: RolloutState = { ...state, holdStartedAt: now, revision: state.revision + 1 }
    const hold = state.phase === 'mirror' ? state.mirror?.holdMs : state.steps[state.step]?.holdMs
    const reason = `sluice restarted: the rollout goes on ${where(state)}; the hold of ${hold} ms starts again`
    await this.#s.control.change('rollout.restart', { source: 'system', reason }, (s) => {
      if (rolloutOf(s).revision !== state.revision) throw new StaleRollout('the rollout changed meanwhile')
      return {
        next: { ...s, rollout: next },
        before: { rollout: brief(state) },
        after: { rollout: brief(next) },
      }
    })
    return next
  }

  /** Stops the timer; waits for a verdict being applied. Safe to call twice. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#notifier.stop()
    clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#ticking
    await this.#saves
  }

  /** Starts a rollout. RolloutConflictError (409) while one is active, RolloutInvalidError (400) for a bad spec. */
  async begin(spec: RolloutSpec, who: { source?: 'admin' | 'rollout'; actor: string | null }): Promise<RolloutState> {
    const c = this.#s.config.rollout
    const canary = spec.canary ?? c?.canary
    const baseline = spec.baseline ?? c?.baseline
    const steps = spec.steps ?? c?.steps
    const missing = canary === undefined ? 'canary' : baseline === undefined ? 'baseline' : 'steps'
    if (canary === undefined || baseline === undefined || steps === undefined) {
      throw new RolloutInvalidError(
        `${missing} is required: neither the request nor the config's rollout gives it`,
        missing,
      )
    }
    const event: RolloutEvent = {
      type: 'start',
      canary,
      baseline,
      steps,
      onBreach: spec.onBreach ?? c?.onBreach ?? 'rollback',
      // The config's mirror phase belongs to the rollout it describes.
      mirror: c?.mirror && c.canary === canary ? { ...c.mirror } : null,
      actor: who.actor,
      versions: this.#s.versions.map((v) => v.name),
      source: who.source ?? 'admin',
      // The config is deeply read-only; the machine copies these into the state.
      gates: (spec.gates ?? c?.gates ?? []) as readonly Gate[],
      gateTimeoutMs: spec.gateTimeoutMs ?? c?.gateTimeoutMs ?? DEFAULT_GATE_TIMEOUT_MS,
      windows: (spec.windows ?? c?.windows ?? []) as readonly DeployWindow[],
      notify: (spec.notify ?? c?.notify ?? []) as readonly NotifyTarget[],
    }
    return (await this.#apply(event)).state
  }

  /** An operator's pause, resume, promote, abort or approve. RolloutConflictError (409) when nothing to act on. */
  async command(type: RolloutCommand, actor: string | null): Promise<RolloutState> {
    return (await this.#apply({ type, actor })).state
  }

  /**
   * One analysis interval: feeds the rollout's totals and sends the verdict
   * to the machine. The windows are moved to now right before they are
   * read, so the newest requests are judged.
   */
  async tick(): Promise<Verdict | undefined> {
    const state = this.state
    // Changes made through other proxies (an approval, a pause) reach the driver through the store.
    this.#observe(state, null)
    if (!isActive(state)) return undefined
    // With a shared store one proxy at a time drives the rollout. While the
    // store is unreachable every proxy judges its own traffic and may roll
    // back on its own: rolling back is always safe and must not wait.
    const store = this.#s.store
    if (!store.leader) return store.up ? undefined : this.#localSafetyNet(state)
    const baseline = this.#s.findVersion(state.baseline!)
    const canary = this.#s.findVersion(state.canary!)
    if (!baseline) return undefined
    if (this.#figures?.id !== state.id) await this.#adopt(state)
    const bs = await this.#slices(baseline)
    const cs = canary ? await this.#slices(canary) : []
    this.#feed(state, bs, cs, canary ? this.#s.outcomes.window(canary).currentSliceStart : this.#now())
    if (state.phase === 'mirror') {
      // The mirror phase is judged on this proxy's shadow figures since the phase began.
      await this.feedMirrorFigures(this.#mirror.figuresSince(state.stepStartedAt ?? 0))
      return undefined
    }
    if (state.phase !== 'steps') return undefined
    const verdict = rolloutVerdict({
      state,
      baseline: bs,
      canary: cs,
      sliceMs: this.#s.outcomes.windowOptions.sliceMs,
      canaryUsable: usable(canary),
      limits: this.#s.config.analysis,
    })
    if (verdict.outcome === 'pass' && gatesDue(state, this.#now())) {
      await this.#apply({ type: 'verdict', verdict, gates: await this.#checkGates(state) })
    } else if (verdict.outcome !== 'wait') await this.#apply({ type: 'verdict', verdict })
    return verdict
  }

  /** Runs every gate of the rollout at once and counts each check. */
  async #checkGates(state: RolloutState): Promise<GateCheck[]> {
    const canary = state.canary!
    const baseline = state.baseline!
    const context = { rollout: rolloutView(state), step: state.step, canary, baseline }
    const checks = await Promise.all(
      (state.gates ?? []).map((g) =>
        g.webhook
          ? checkWebhook({ name: g.name, ...g.webhook }, context)
          : checkPrometheus({ name: g.name, ...g.prometheus! }, canary, baseline),
      ),
    )
    for (const c of checks) this.#s.metrics.gateChecks.inc({ gate: c.gate, result: c.result })
    return checks
  }

  /**
   * Derives the notification events from the last state this driver saw to
   * `next` and queues them. Only the leader sends; the others keep up with
   * the state, so a proxy that becomes leader does not repeat old events.
   */
  #observe(next: RolloutState, reason: string | null): void {
    const seen = this.#seen
    if (seen !== undefined && next.revision <= seen.revision) return
    this.#seen = next
    if (seen === undefined || !this.#s.store.leader || !next.notify?.length) return
    const at = new Date(this.#now()).toISOString()
    const rollout = rolloutView(next)
    for (const event of notifyEvents(seen, next)) {
      this.#notifier.send(next.notify, { event, at, rollout, reason: reason ?? next.reason })
    }
  }

  /** Waits until every queued notification was sent or given up on (tests, a graceful stop). */
  notificationsIdle(): Promise<void> {
    return this.#notifier.idle()
  }

  /** A non-leader cut off from the store: a rollback on its own verdict, nothing else. */
  async #localSafetyNet(state: RolloutState): Promise<Verdict | undefined> {
    if (state.phase !== 'steps' || state.onBreach !== 'rollback') return undefined
    const baseline = this.#s.findVersion(state.baseline!)
    const canary = this.#s.findVersion(state.canary!)
    if (!baseline) return undefined
    const own = (v: Version) => this.#s.outcomes.window(v).exportSlices()
    const verdict = rolloutVerdict({
      state,
      baseline: own(baseline),
      canary: canary ? own(canary) : [],
      sliceMs: this.#s.outcomes.windowOptions.sliceMs,
      canaryUsable: usable(canary),
      limits: this.#s.config.analysis,
    })
    if (verdict.outcome === 'breach') await this.#apply({ type: 'verdict', verdict })
    return verdict
  }

  /**
   * `tick` calls this once per interval during a rollout's mirror phase
   * with the shadow figures counted since the phase began
   * (the `mirror` option's `figuresSince`). The machine rolls back over the limits
   * or moves on to step 0.
   */
  async feedMirrorFigures(figures: MirrorFigures): Promise<RolloutState> {
    const state = this.state
    if (!isActive(state) || state.phase !== 'mirror') return state
    const maxP95IncreaseMs = this.#s.config.analysis.maxP95IncreaseMs
    return (await this.#apply({ type: 'mirror', figures, maxP95IncreaseMs })).state
  }

  /** `GET /v1/rollouts`: past and current rollouts, newest last; the active one with its live figures. */
  async reports(): Promise<RolloutReport[]> {
    // This proxy's own record writes first: a rollout it just ended must not read back as progressing.
    await this.#saves
    const records = (await this.#s.store.rollouts(HISTORY_LIMIT)) as unknown as StoredRecord[]
    const state = this.state
    const live = this.#figures
    return records.map((r) => {
      // The current rollout reads live: while it runs, and in the moment between its end being
      // committed to the state and its final record being saved.
      const stale = isActive(state) || (r as { outcome?: unknown }).outcome !== state.status
      if (r.id === state.id && stale && live?.id === r.id) return buildReport(state, live.figures)!
      const { totals: _totals, ...report } = r
      return report
    })
  }

  #schedule(): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#ticking = this.tick()
        .then(
          () => undefined,
          (err: unknown) => this.#s.log.warn({ err }, 'rollout verdict failed'),
        )
        .finally(() => {
          this.#ticking = undefined
          this.#schedule()
        })
    }, this.#s.config.analysis.intervalMs)
    this.#timer.unref()
  }

  /**
   * Computes the event's transition and commits it with its weights and
   * mirroring in one change. Throws what the machine throws (409, 400).
   */
  async #apply(event: RolloutEvent): Promise<RolloutTransition> {
    for (let attempt = 0; ; attempt++) {
      const before = this.state
      const now = this.#now()
      const t = transition(before, event, now)
      if (!t.changed) return t
      const audit = t.audit
      const meta = { source: audit?.source ?? 'rollout', actor: audit?.actor ?? null }
      try {
        await this.#s.control.change(
          audit?.action ?? 'rollout.update',
          { ...meta, reason: audit?.reason ?? null },
          (s) => this.#plan(s, before, t),
        )
      } catch (err) {
        if (err instanceof StaleRollout && attempt < MAX_STALE_RETRIES) continue
        throw err
      }
      await this.#after(before, t)
      return t
    }
  }

  #plan(s: DesiredState, before: RolloutState, t: RolloutTransition) {
    if (rolloutOf(s).revision !== before.revision) throw new StaleRollout('the rollout changed meanwhile')
    const next: DesiredState = { ...s, rollout: t.state }
    // Weights first: they are what an operator scanning the audit looks for.
    const was: Record<string, unknown> = {}
    const is: Record<string, unknown> = {}
    if (t.weights) {
      // A rollout owns the whole split: versions it does not name get 0.
      const weights: Record<string, number> = {}
      for (const v of this.#s.versions) weights[v.name] = t.weights[v.name] ?? 0
      next.weights = weights
      was.weights = s.weights
      is.weights = weights
    }
    if (t.mirror !== undefined) {
      next.mirror = t.mirror === null ? null : mirrorSettings(this.#s, t.mirror)
      was.mirror = s.mirror
      is.mirror = next.mirror
    }
    was.rollout = brief(before)
    is.rollout = brief(t.state)
    return { next, before: was, after: is }
  }

  /** Bookkeeping of a committed transition: totals, the rollback counter, the stored record. */
  async #after(before: RolloutState, t: RolloutTransition): Promise<void> {
    const state = t.state
    this.#seen ??= before
    this.#observe(state, t.audit?.reason ?? null)
    if (state.id === null) return
    if (this.#figures?.id !== state.id) this.#figures = { id: state.id, figures: startFigures(this.#sliceStart(state.startedAt!)) }
    if (state.status === 'rolled_back' && before.status !== 'rolled_back') {
      this.#s.metrics.rollbacks.inc({ version: state.canary! })
      this.#s.log.warn({ rollout: state.id, canary: state.canary, reason: state.reason }, 'rollout rolled back')
    }
    if (t.ended) await this.#feedNow(state, Number.POSITIVE_INFINITY)
    this.#save(state)
  }

  /**
   * Follows a rollout this driver did not start (another proxy drove it, or
   * this one restarted): its totals go on from its stored record, as of the
   * record's last save, or start now.
   */
  async #adopt(state: RolloutState): Promise<void> {
    const records = (await this.#s.store.rollouts(HISTORY_LIMIT)) as unknown as StoredRecord[]
    const totals = records.find((r) => r.id === state.id)?.totals
    if (this.#figures?.id === state.id) return
    this.#figures = { id: state.id!, figures: totals ?? startFigures(this.#sliceStart(this.#now())) }
  }

  /** Adds the completed slices (all of them with `Infinity`) to the followed rollout's totals. */
  async #feedNow(state: RolloutState, completedBeforeMs: number): Promise<void> {
    const baseline = this.#s.findVersion(state.baseline!)
    const canary = this.#s.findVersion(state.canary!)
    const bs = baseline ? await this.#slices(baseline) : []
    const cs = canary ? await this.#slices(canary) : []
    this.#feed(state, bs, cs, completedBeforeMs)
  }

  #feed(state: RolloutState, bs: SliceSnapshot[], cs: SliceSnapshot[], completedBeforeMs: number): void {
    if (state.id === null) return
    if (this.#figures?.id !== state.id) this.#figures = { id: state.id, figures: startFigures(this.#sliceStart(this.#now())) }
    this.#figures.figures = feedFigures(this.#figures.figures, bs, cs, completedBeforeMs)
  }

  /**
   * The start of the window slice that `t` falls in. A rollout's figures take
   * in the slice in progress when it started: a rollback within that first
   * slice would otherwise report none of the errors it acted on, while the
   * traffic from before the start it adds is the baseline's alone (the canary
   * had weight 0) and at most one slice of it.
   */
  #sliceStart(t: number): number {
    const sliceMs = this.#s.outcomes.windowOptions.sliceMs
    return t - (t % sliceMs)
  }

  /** Saves are chained so an older record never lands after a newer one. */
  #save(state: RolloutState): void {
    const figures = this.#figures?.figures
    const report = figures && buildReport(state, figures)
    if (!report) return
    const record = { ...report, totals: figures } as unknown as RolloutRecord
    this.#saves = this.#saves
      .then(() => this.#s.store.saveRollout(record))
      .catch((err: unknown) => this.#s.log.warn({ err, rollout: state.id }, 'saving the rollout record failed'))
  }
}

/** The rollout state kept in the desired state (idle when none ever ran). */
export function rolloutOf(s: DesiredState): RolloutState {
  return s.rollout ?? idleRollout()
}

/** What the audit shows of a rollout state. */
function brief(r: RolloutState): Record<string, unknown> {
  return { status: r.status, step: r.step, phase: r.phase }
}

/** The `mirror` section the mirror phase asks for: the config's section (or its defaults) for this version and percent. */
function mirrorSettings(s: RolloutHost, m: { version: string; percent: number }): MirrorSection {
  return mirrorSchema.parse({ ...s.config.mirror, version: m.version, percent: m.percent })
}

/** At least one usable instance: true; none, but one never probed yet: undefined (no verdict yet). */
function usable(v: Version | undefined): boolean | undefined {
  if (!v) return false
  if (v.instances.some((i) => i.usable)) return true
  return v.instances.some((i) => !i.probed) ? undefined : false
}
