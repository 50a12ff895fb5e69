import type { Logger } from 'pino'
import type { Instance } from '../routing/instance.js'
import { ProbeConnection } from './probe-connection.js'
import { nextHealth, type ProbeState, type Thresholds, unprobed } from './thresholds.js'

export interface ProbeOptions {
  path: string
  intervalMs: number
  timeoutMs: number
  healthyThreshold: number
  unhealthyThreshold: number
  /** HTTP/2 versions are probed with grpc.health.v1.Health/Check. */
  grpc?: boolean
}

interface Probed {
  instance: Instance
  state: ProbeState
  timer: NodeJS.Timeout | undefined
  inFlight: boolean
  connection: ProbeConnection
  /** Whether becoming healthy starts slow start: not for the proxy's very first round, when no traffic flows yet. */
  ramp: boolean
}

/**
 * Active health probes: one GET per instance every `intervalMs`, each
 * instance on its own jittered timer so many instances never fire together.
 * Each instance is probed over its own kept-alive connection (see
 * probe-connection.ts).
 */
export class Prober {
  readonly #probed = new Map<Instance, Probed>()
  readonly #thresholds: Thresholds
  #stopped = false
  #firstRound: Promise<void> | undefined

  constructor(
    readonly opts: ProbeOptions,
    readonly log: Logger,
    /** Called after any instance's health flips. */
    readonly onChange: (instance: Instance) => void,
    readonly now: () => number = Date.now,
  ) {
    this.#thresholds = { healthy: opts.healthyThreshold, unhealthy: opts.unhealthyThreshold }
  }

  /** Starts probing the instances not yet probed and stops those no longer listed. Resolves after their first probe. */
  sync(instances: readonly Instance[]): Promise<void> {
    const keep = new Set(instances)
    for (const [inst, p] of this.#probed) {
      if (!keep.has(inst)) {
        clearTimeout(p.timer)
        p.connection.close()
        this.#probed.delete(inst)
      }
    }
    const first: Promise<void>[] = []
    // Instances of the first sync are the proxy's initial set: nothing to protect from a flood yet.
    const ramp = this.#firstRound !== undefined
    for (const inst of instances) {
      if (this.#probed.has(inst)) continue
      const p: Probed = {
        instance: inst,
        state: unprobed(this.#thresholds),
        timer: undefined,
        inFlight: false,
        connection: new ProbeConnection(inst.url, this.opts, inst.version.transport),
        ramp,
      }
      inst.healthy = false
      this.#probed.set(inst, p)
      first.push(this.#probe(p))
    }
    const round = Promise.all(first).then(() => {})
    this.#firstRound ??= round
    return round
  }

  /** Resolves when the first probe round has finished (readyz waits on it). */
  get firstRound(): Promise<void> {
    return this.#firstRound ?? Promise.resolve()
  }

  /** Their version's transport changed (reload): later probes connect the new way. */
  reconnect(instances: readonly Instance[]): void {
    for (const inst of instances) {
      const p = this.#probed.get(inst)
      if (p === undefined) continue
      p.connection.close()
      p.connection = new ProbeConnection(inst.url, this.opts, inst.version.transport)
    }
  }

  stop(): void {
    this.#stopped = true
    for (const p of this.#probed.values()) {
      clearTimeout(p.timer)
      p.connection.close()
    }
    this.#probed.clear()
  }

  async #probe(p: Probed): Promise<void> {
    if (this.#stopped || p.inFlight) return
    p.inFlight = true
    const ok = await p.connection.check()
    p.inFlight = false
    if (this.#stopped || this.#probed.get(p.instance) !== p) return
    const before = p.state.healthy
    p.state = nextHealth(p.state, ok, this.#thresholds)
    const inst = p.instance
    const wasProbed = inst.probed
    inst.probed = true
    if (p.state.healthy !== before || !wasProbed) {
      inst.healthy = p.state.healthy
      // New (added after start) and recovered instances ramp up from a small share (health.slowStartMs).
      if (inst.healthy && p.ramp) inst.usableSince = this.now()
      if (p.state.healthy !== before) {
        // An instance going down is what an operator's alerting looks for: warn; its return is info.
        this.log[inst.healthy ? 'info' : 'warn'](
          { instance: inst.url, version: inst.version.name, healthy: inst.healthy },
          `instance ${inst.healthy ? 'healthy' : 'unhealthy'}`,
        )
      }
      this.onChange(inst)
    }
    p.ramp = true
    this.#schedule(p, !wasProbed)
  }

  #schedule(p: Probed, first: boolean): void {
    // The first probes of a sync fire together: the second lands anywhere in
    // [0.5, 1.5) intervals so they fall out of step, then +-10% jitter keeps
    // them spread (Envoy's initial and interval jitter).
    const factor = first ? 0.5 + Math.random() : 0.9 + Math.random() * 0.2
    p.timer = setTimeout(() => void this.#probe(p), this.opts.intervalMs * factor)
    p.timer.unref()
  }
}
