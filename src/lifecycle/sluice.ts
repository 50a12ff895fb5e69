import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import { AdminError, ConfigError, type Problem } from '../errors.js'
import { type Discovered, diffMembers, type InstanceSource, wantedMembers } from '../discovery/membership.js'
import { OutlierDetector } from '../health/outlier.js'
import type { Prober } from '../health/prober.js'
import { Metrics, type RolloutPhaseName, rolloutPhaseName } from '../metrics/metrics.js'
import { accessLogger } from '../proxy/access-log.js'
import { Deadlines, sweepEveryMs } from '../proxy/deadlines.js'
import { type ForwardContext, failureDetail } from '../proxy/forward.js'
import { Certificates } from '../proxy/certificates.js'
import { ProxyListener } from '../proxy/listener.js'
import { closePool, openPool, type PoolOptions, replacePool, resetPool } from '../proxy/pools.js'
import { findInstance, Instance, sameTransport, Version } from '../routing/instance.js'
import { RoutingTable } from '../routing/table.js'
import { type ChangeMeta, Control } from '../state/control.js'
import { type DesiredState, initialState, type RuntimeInstance } from '../state/desired.js'
import { MemoryStore } from '../state/memory-store.js'
import type { StateStore } from '../state/store.js'
import { type DrainTarget, type MirrorSection, type RolloutState, weightProblems } from '../state/types.js'
import type { SluiceHooks } from './hooks.js'
import { Outcomes } from './outcomes.js'

export interface SluiceOptions {
  log: Logger
  /** Defaults to the in-process store. */
  store?: StateStore
  /**
   * `single` (the default) does everything in this process. With workers
   * (README "Workers and self-upgrade") the `primary` keeps the store, the
   * control plane and the probes but binds no data listener; a `worker`
   * serves the data listener from the desired state and the health the
   * primary sends, and probes nothing itself.
   */
  role?: 'single' | 'primary' | 'worker'
}

export type { DrainTarget } from '../state/types.js'

const RAMP_REBUILD_MS = 250
/** How often leaving instances are checked for idleness. */
const LEAVE_CHECK_MS = 50

/**
 * The core of one proxy: versions and instances, the routing table, the
 * data path, the control plane and the probes, with one lifecycle. Data
 * flows one way: listener -> route -> instance pool; health, drains and the
 * control plane feed the routing table from the side by rebuilding it.
 * Features (WebSockets, mirroring, rollouts, discovery) are built around it
 * in lifecycle/assemble.ts; the core imports none of them.
 */
export class Sluice {
  config: Config
  readonly log: Logger
  readonly versions: Version[] = []
  readonly routing: { table: RoutingTable }
  readonly metrics: Metrics
  readonly outlier: OutlierDetector
  readonly outcomes: Outcomes
  readonly store: StateStore
  readonly control: Control
  readonly forwardContext: ForwardContext
  readonly listener: ProxyListener
  /** The features' hooks, registered by the assembly. */
  readonly hooks: SluiceHooks[] = []
  /** Further conditions for /readyz (discovery's first answers), registered by the assembly. */
  readonly readiness: (() => boolean)[] = []
  prober: Prober | undefined
  readonly role: 'single' | 'primary' | 'worker'
  /** Processes serving the data listener (`sluice_workers`); the primary sets it. */
  workerCount = 1
  #nextVersionIndex = 0
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new'
  #stopped: Promise<void> | undefined
  #ready = false
  #rampTimer: NodeJS.Timeout | undefined
  #analysisTimer: NodeJS.Timeout | undefined
  readonly #drainTimers = new Map<Instance, NodeJS.Timeout>()
  #poolOptions: PoolOptions
  readonly #sources = new Map<Instance, InstanceSource>()
  /** Instances no longer wanted, draining until idle (and past `linger`) or until `deadline`, then removed. */
  readonly #leaving = new Map<Instance, { linger: number; deadline: number }>()
  #leaveTimer: NodeJS.Timeout | undefined
  readonly #discovered = new Map<string, Discovered>()
  /** The store has loaded the desired state: runtime instances are known and changes can rebuild. */
  #loaded = false

  constructor(config: Config, opts: SluiceOptions) {
    this.config = config
    this.log = opts.log
    this.store = opts.store ?? new MemoryStore()
    this.role = opts.role ?? 'single'
    this.#poolOptions = poolOptions(config)
    this.metrics = new Metrics({
      versions: () => this.versions,
      weights: () => this.desired.weights,
      rollout: () => rolloutGauge(this.desired.rollout),
      storeUp: () => (this.store.up ? 1 : 0),
      workers: () => this.workerCount,
    })
    this.outlier = new OutlierDetector(
      config.outlier,
      this.log,
      {
        onChange: () => this.rebuild(),
        onEjected: (i) => this.metrics.outlierEjections.inc({ version: i.version.name }),
      },
      () => this.versions,
    )
    this.outcomes = new Outcomes(this.metrics, this.outlier, {
      windowMs: config.analysis.windowMs,
      sliceMs: config.analysis.intervalMs,
      now: Date.now,
    }, config.analysis.grpcErrorCodes)
    this.#syncVersions(config)
    this.control = new Control(this.store, this.log, (s) => this.#applyDesired(s))
    this.routing = { table: this.#buildTable(initialState(config.weights)) }
    this.forwardContext = {
      routing: this.routing,
      sink: this.outcomes,
      retries: config.retries.attempts,
      headersTimeout: config.timeouts.upstreamMs,
      bodyTimeout: config.timeouts.bodyIdleMs,
      connectMs: config.timeouts.connectMs,
      requestBodyMs: config.timeouts.requestBodyMs,
      deadlines: new Deadlines(sweepEveryMs(config.timeouts.upstreamMs, config.timeouts.requestBodyMs)),
      logFailure: (err, instance, requestId) =>
        this.log.warn({ code: err.code, instance: instance?.url, requestId, detail: failureDetail(err) }, err.message),
      proto: config.listen.tls ? 'https' : 'http',
      maxHeaderBytes: config.limits.maxHeaderBytes,
      requestIdHeader: config.requestId.header,
      stopping: false,
      accessLog: config.log.access ? accessLogger(this.log) : undefined,
    }
    this.listener = new ProxyListener(this.forwardContext, {
      clientIdleMs: config.timeouts.clientIdleMs,
      maxHeaderBytes: config.limits.maxHeaderBytes,
      clientConnections: config.limits.clientConnections,
      certificates: config.listen.tls ? new Certificates(config.listen.tls, this.log) : undefined,
      http2: config.listen.http2,
      maxConcurrentStreams: config.listen.maxConcurrentStreams,
    })
  }

  /** The desired state as this proxy knows it. */
  get desired(): DesiredState {
    return this.store.current()
  }

  get ready(): boolean {
    return this.#ready && this.#state === 'running' && this.readiness.every((r) => r())
  }

  get status(): string {
    // During drain.delayMs the proxy still runs, but it is on its way out: say so on /readyz and /v1/state.
    return this.#state === 'running' && this.forwardContext.stopping ? 'stopping' : this.#state
  }

  async start(): Promise<{ port: number }> {
    if (this.#state !== 'new') throw new Error(`cannot start a proxy that is ${this.#state}`)
    this.#state = 'starting'
    const mirror = this.config.mirror ? copyMirror(this.config.mirror) : null
    const state = await this.store.init({ ...initialState(this.config.weights), mirror })
    this.#loaded = true
    this.#applyDesired(state)
    const restored = this.store.restored
    if (restored) {
      // The file's state won over the config's seed: the audit says so, where from and at which revision.
      const reason = `state loaded from ${restored.from} at revision ${restored.revision}`
      const loaded = { file: restored.from, revision: restored.revision }
      await this.control.change('start', { source: 'system', reason }, (s) => ({ next: s, before: null, after: loaded }))
    }
    if (this.config.health && this.role !== 'worker') {
      // Loaded here, not at the top: a worker never probes (its primary does), and the prober's HTTP client is
      // all of undici's client API, which a worker booting in a rolling restart would load on the serving cores.
      const { Prober } = await import('../health/prober.js')
      this.prober = new Prober(this.config.health, this.log, () => this.rebuild())
      void this.prober.sync(this.#allInstances()).then(() => {
        this.#ready = true
      })
    } else {
      this.#ready = true
    }
    this.#analysisTimer = setInterval(() => this.outcomes.tick(Date.now()), this.config.analysis.intervalMs)
    this.#analysisTimer.unref()
    for (const h of this.hooks) h.onLoaded?.()
    // The primary's workers bind the public port (lifecycle/worker-pool.ts).
    const port =
      this.role === 'primary' ? 0 : await this.listener.listen(this.config.listen.host, this.config.listen.port)
    this.#state = 'running'
    return { port }
  }

  /**
   * The first moment of a graceful stop: readyz answers 503 and the data
   * listener takes no new connection from now on; what is in flight goes on
   * (up to drain.timeoutMs) while the assembly stops the features, in
   * reverse order of their start, before `stop` waits for it and closes the rest.
   */
  beginStop(): void {
    if (this.#state === 'stopping' || this.#state === 'stopped') return
    this.#state = 'stopping'
    void this.listener.close(this.config.drain.timeoutMs)
  }

  /** Graceful stop: readyz 503, no new connections, in-flight work finishes within drain.timeoutMs. */
  stop(): Promise<void> {
    if (this.#stopped) return this.#stopped
    this.beginStop()
    this.#stopped = (async () => {
      const timeoutMs = this.config.drain.timeoutMs
      await this.listener.close(timeoutMs)
      this.prober?.stop()
      this.outlier.stop()
      clearInterval(this.#analysisTimer)
      clearTimeout(this.#rampTimer)
      clearInterval(this.#leaveTimer)
      for (const t of this.#drainTimers.values()) clearTimeout(t)
      await Promise.all(this.#allInstances().map((i) => closePool(i)))
      await this.store.close()
      this.#state = 'stopped'
    })()
    return this.#stopped
  }

  // ---- control plane: every change goes through `control.change` ----

  setWeights(weights: Record<string, number>, meta: ChangeMeta): Promise<DesiredState> {
    const problems = this.weightProblems(weights)
    if (problems.length > 0) {
      const p = problems[0]!
      return Promise.reject(new AdminError(400, 'SLUICE_INVALID_WEIGHTS', p.message, p.path))
    }
    return this.control.change('weights', meta, (s) => {
      const before = s.weights
      const after: Record<string, number> = {}
      for (const v of this.versions) after[v.name] = weights[v.name] ?? 0
      return { next: { ...s, weights: after }, before, after }
    })
  }

  weightProblems(weights: Record<string, number>): Problem[] {
    return weightProblems(weights, (name) => this.versions.some((v) => v.name === name))
  }

  drain(target: DrainTarget, draining: boolean, meta: ChangeMeta): Promise<DesiredState> {
    const key = 'version' in target ? 'versions' : 'instances'
    const name = 'version' in target ? target.version : normalizeUrl(target.url)
    const known =
      'version' in target
        ? this.versions.some((v) => v.name === name)
        : this.#allInstances().some((i) => i.url === name)
    if (!known) {
      const what = 'version' in target ? `version "${name}"` : `instance "${name}"`
      return Promise.reject(
        new AdminError(404, 'SLUICE_UNKNOWN_TARGET', `unknown ${what}`, 'version' in target ? 'version' : 'url'),
      )
    }
    return this.control.change(draining ? 'drain' : 'undrain', meta, (s) => {
      const list = s.drained[key]
      const before = { [key === 'versions' ? 'version' : 'url']: name, draining: list.includes(name) }
      const nextList = draining ? [...new Set([...list, name])] : list.filter((n) => n !== name)
      return {
        next: { ...s, drained: { ...s.drained, [key]: nextList } },
        before,
        after: { ...before, draining },
      }
    })
  }

  /**
   * Re-reads the config file; the old config stays on any problem. A
   * self-upgrade (`restart`) applies the file the same way under its own audit action.
   */
  async reload(meta: ChangeMeta, action: 'reload' | 'restart' = 'reload'): Promise<DesiredState> {
    const source = this.config.source
    if (source === undefined) {
      throw new AdminError(400, 'SLUICE_NO_CONFIG_FILE', 'this proxy was started without a config file')
    }
    // Imported here: only a process that reads the config file needs the parser (a worker never does).
    const { loadConfigFile } = await import('../config/load.js')
    const next = await loadConfigFile(source)
    const problems = reloadProblems(this.config, next)
    if (problems.length > 0) throw new ConfigError(problems)
    // Certificates are re-read on every reload (changed or not): a pair that does not load is logged, the old one stays.
    if (next.listen.tls !== undefined) await this.listener.certificates?.reload(next.listen.tls)
    const prev = this.config
    const fileWeightsChanged = JSON.stringify(prev.weights) !== JSON.stringify(next.weights)
    const fileMirrorChanged = JSON.stringify(prev.mirror ?? null) !== JSON.stringify(next.mirror ?? null)
    this.adoptConfig(next)
    const names = new Set(next.versions.map((v) => v.name))
    return this.control.change(action, meta, (s) => {
      // A running rollout owns the weights: a file edit must not yank them from under it.
      const rolloutOwns = s.rollout?.status === 'progressing' || s.rollout?.status === 'paused'
      const keepRuntime = (!fileWeightsChanged || rolloutOwns) && Object.keys(s.weights).every((n) => names.has(n))
      const weights: Record<string, number> = {}
      for (const v of next.versions)
        weights[v.name] = keepRuntime ? (s.weights[v.name] ?? 0) : (next.weights[v.name] ?? 0)
      const instances = new Set(this.#allInstances().map((i) => i.url))
      // The file's mirror section applies when it changed; mirroring to a version no longer declared stops.
      const mirror = fileMirrorChanged
        ? next.mirror
          ? copyMirror(next.mirror)
          : null
        : s.mirror && names.has(s.mirror.version)
          ? s.mirror
          : null
      return {
        next: {
          ...s,
          weights,
          mirror,
          instances: s.instances.filter((i) => names.has(i.version)),
          drained: {
            versions: s.drained.versions.filter((n) => names.has(n)),
            instances: s.drained.instances.filter((u) => instances.has(u)),
          },
          configGeneration: s.configGeneration + 1,
        },
        before: { weights: s.weights, versions: summary(prev) },
        after: { weights, versions: summary(next) },
      }
    })
  }

  /** Takes a validated config's static parts (versions, pools, routing inputs); a reload commits the rest. */
  adoptConfig(next: Config): void {
    this.config = next
    this.#poolOptions = poolOptions(next)
    this.#syncVersions(next)
    if (this.prober) void this.prober.sync(this.#allInstances())
    for (const h of this.hooks) h.onConfig?.(next)
  }

  // ---- runtime ----

  /** Rebuilds the routing table from the desired state and the live facts. */
  rebuild(): void {
    if (this.#state === 'stopped') return
    this.outlier.failOpen()
    const table = this.#buildTable(this.desired, this.routing.table)
    this.routing.table = table
    for (const h of this.hooks) h.onTable?.(table)
    clearTimeout(this.#rampTimer)
    if (table.ramping) {
      this.#rampTimer = setTimeout(() => this.rebuild(), RAMP_REBUILD_MS)
      this.#rampTimer.unref()
    }
  }

  /** `previous` hands its sticky bucket tables on, so a change costs its difference, not a rebuild. */
  #buildTable(s: DesiredState, previous?: RoutingTable): RoutingTable {
    return new RoutingTable({
      versions: this.versions,
      weights: s.weights,
      sticky: this.config.sticky.keys,
      overrides: this.config.overrides,
      shadowVersion: s.mirror?.version,
      slowStartMs: this.config.health?.slowStartMs ?? 0,
      now: Date.now(),
      revision: s.revision,
      previous,
    })
  }

  #applyDesired(s: DesiredState): void {
    this.#syncMembers(this.config, s.instances)
    const now = Date.now()
    const drainedVersions = new Set(s.drained.versions)
    const drainedInstances = new Set(s.drained.instances)
    const newlyDrained: Instance[] = []
    for (const v of this.versions) {
      const versionDraining = drainedVersions.has(v.name)
      for (const inst of v.instances) {
        const before = inst.draining || v.draining
        inst.draining = drainedInstances.has(inst.url) || this.#leaving.has(inst)
        const after = inst.draining || versionDraining
        if (after && !before) newlyDrained.push(inst)
        else if (!after && before) {
          clearTimeout(this.#drainTimers.get(inst))
          this.#drainTimers.delete(inst)
          inst.usableSince = now
        }
      }
      v.draining = versionDraining
    }
    if (this.#state !== 'new') this.rebuild()
    for (const inst of newlyDrained) this.#startDrain(inst)
  }

  /** New work already avoids it; what is still in flight after drain.timeoutMs is cancelled. */
  #startDrain(inst: Instance): void {
    const t = setTimeout(() => {
      this.#drainTimers.delete(inst)
      if (inst.inflight > 0) {
        this.log.warn({ instance: inst.url, inflight: inst.inflight }, 'drain timeout: cancelling in-flight requests')
        void resetPool(inst, this.#poolOptions, new Error('drain timeout'))
      }
    }, this.config.drain.timeoutMs)
    t.unref()
    this.#drainTimers.set(inst, t)
    for (const h of this.hooks) h.onDrain?.(inst)
  }

  #syncVersions(config: Config): void {
    const wanted = new Map(config.versions.map((v) => [v.name, v.instances]))
    for (let i = this.versions.length - 1; i >= 0; i--) {
      const v = this.versions[i]!
      if (!wanted.has(v.name)) {
        this.versions.splice(i, 1)
        this.#discovered.delete(v.name)
        for (const inst of v.instances) {
          this.#leaving.delete(inst)
          this.#sources.delete(inst)
          void closePool(inst)
        }
      }
    }
    for (const vc of config.versions) {
      let v = this.versions.find((x) => x.name === vc.name)
      if (!v) {
        v = new Version(vc.name, this.#nextVersionIndex++)
        this.versions.push(v)
      }
      if (!sameTransport(v.transport, vc.transport)) {
        v.transport = vc.transport
        v.http2 = vc.transport.protocol !== 'http1'
        // New requests take the new connections at once; those in flight finish on the old ones.
        for (const inst of v.instances) replacePool(inst, this.#poolOptions)
        this.prober?.reconnect(v.instances)
      }
    }
    this.#syncMembers(config, this.#runtimeInstances())
    // Declared order is the config's order.
    this.versions.sort(
      (a, b) =>
        config.versions.findIndex((v) => v.name === a.name) - config.versions.findIndex((v) => v.name === b.name),
    )
  }

  // ---- membership: config, discovery and the admin API feed it from the side, through #syncMembers ----

  /** Discovery's latest addresses for a version (origins); instances follow them. */
  setDiscovered(version: string, discovered: Discovered): void {
    if (!this.findVersion(version) || this.#state === 'stopping' || this.#state === 'stopped') return
    this.#discovered.set(version, discovered)
    // Before the state is loaded, start() applies what was discovered so far.
    if (this.#loaded && this.#syncMembers(this.config, this.#runtimeInstances())) this.rebuild()
  }

  /** Discovery's latest answers by version, as plain data (the primary hands them to its workers). */
  discoveredNow(): Record<string, Discovered> {
    return Object.fromEntries(this.#discovered)
  }

  #runtimeInstances(): readonly RuntimeInstance[] {
    return this.#loaded ? this.desired.instances : []
  }

  /** Where an instance came from (config, dns, srv, api). */
  sourceOf(inst: Instance): InstanceSource {
    return this.#sources.get(inst) ?? 'config'
  }

  /** Adds an instance at runtime (source `api`): committed, audited and shared like any change. */
  addInstance(version: string, url: string, meta: ChangeMeta): Promise<DesiredState> {
    const origin = normalizeUrl(url)
    if (!this.findVersion(version))
      return Promise.reject(new AdminError(404, 'SLUICE_UNKNOWN_TARGET', `unknown version "${version}"`, 'version'))
    return this.control.change('instance.add', meta, (s) => {
      const owner = findInstance(this.versions, origin)?.version.name ?? instanceOf(s.instances, origin)
      if (owner !== undefined)
        throw new AdminError(409, 'SLUICE_INSTANCE_EXISTS', `${origin} is already an instance of "${owner}"`, 'url')
      const added: RuntimeInstance = { version, url: origin }
      return { next: { ...s, instances: [...s.instances, added] }, before: null, after: added }
    })
  }

  /** Removes a runtime instance: it drains (requests finish, WebSockets move), then leaves. */
  removeInstance(url: string, meta: ChangeMeta): Promise<DesiredState> {
    const origin = normalizeUrl(url)
    const inst = findInstance(this.versions, origin)
    if (!inst) return Promise.reject(new AdminError(404, 'SLUICE_UNKNOWN_TARGET', `unknown instance "${origin}"`, 'url'))
    const source = this.sourceOf(inst)
    if (source !== 'api')
      return Promise.reject(
        new AdminError(
          409,
          'SLUICE_INSTANCE_NOT_RUNTIME',
          `${origin} comes from ${source}, not the admin API: drain it instead (POST /v1/drain)`,
          'url',
        ),
      )
    return this.control.change('instance.remove', meta, (s) => {
      const removed = s.instances.find((i) => i.url === origin)
      if (!removed) throw new AdminError(404, 'SLUICE_UNKNOWN_TARGET', `unknown instance "${origin}"`, 'url')
      return { next: { ...s, instances: s.instances.filter((i) => i !== removed) }, before: removed, after: null }
    })
  }

  /**
   * The one code path by which instances join and leave: a new one gets a
   * pool and probes; one no longer wanted drains (hooks hand its WebSockets
   * off) and is removed once idle or after drain.timeoutMs; one wanted again
   * before it left simply stays, so a flapping address never churns pools.
   * True when something changed.
   */
  #syncMembers(config: Config, api: readonly RuntimeInstance[]): boolean {
    const wanted = wantedMembers(config.versions, api, this.#discovered)
    let changed = false
    for (const v of this.versions) {
      const want = wanted.get(v.name) ?? new Map<string, InstanceSource>()
      const { add, gone } = diffMembers(
        v.instances.map((i) => i.url),
        want,
      )
      for (const inst of v.instances) {
        const source = want.get(inst.url)
        if (source === undefined) continue
        this.#sources.set(inst, source)
        if (this.#leaving.delete(inst)) {
          inst.draining = this.#loaded && this.desired.drained.instances.includes(inst.url)
          changed = true
        }
      }
      for (const url of gone) {
        const inst = v.instances.find((i) => i.url === url)!
        if (!this.#leaving.has(inst)) {
          this.#leave(inst)
          changed = true
        }
      }
      for (const url of add) {
        const inst = new Instance(url, v, config.health === undefined)
        if (config.health === undefined) inst.probed = true
        openPool(inst, this.#poolOptions)
        v.instances.push(inst)
        this.#sources.set(inst, want.get(url)!)
        changed = true
      }
    }
    if (changed && this.prober) void this.prober.sync(this.#allInstances())
    return changed
  }

  #leave(inst: Instance): void {
    const idle = inst.inflight === 0 && inst.websockets === 0
    // A discovered address stays (draining) for one probe interval even when idle, so a DNS flap does not churn it.
    const source = this.sourceOf(inst)
    const lingerMs = source === 'dns' || source === 'srv' ? (this.config.health?.intervalMs ?? 0) : 0
    if ((idle && lingerMs === 0) || !this.#loaded) {
      this.#remove(inst)
      return
    }
    this.log.info({ instance: inst.url, version: inst.version.name }, 'instance leaving: draining')
    const now = Date.now()
    this.#leaving.set(inst, { linger: now + lingerMs, deadline: now + this.config.drain.timeoutMs })
    inst.draining = true
    clearTimeout(this.#drainTimers.get(inst))
    this.#drainTimers.delete(inst)
    this.rebuild()
    for (const h of this.hooks) h.onDrain?.(inst)
    if (this.#leaveTimer === undefined) {
      this.#leaveTimer = setInterval(() => this.#sweepLeaving(), LEAVE_CHECK_MS)
      this.#leaveTimer.unref()
    }
  }

  #sweepLeaving(): void {
    const now = Date.now()
    for (const [inst, { linger, deadline }] of this.#leaving) {
      const idle = inst.inflight === 0 && inst.websockets === 0
      if ((!idle || now < linger) && now < deadline) continue
      if (!idle) {
        this.log.warn({ instance: inst.url, inflight: inst.inflight }, 'drain timeout: cancelling in-flight requests')
        void inst.pool?.destroy(new Error('drain timeout')).catch(() => {})
      }
      this.#leaving.delete(inst)
      this.#remove(inst)
      this.rebuild()
      if (this.prober) void this.prober.sync(this.#allInstances())
    }
    if (this.#leaving.size === 0) {
      clearInterval(this.#leaveTimer)
      this.#leaveTimer = undefined
    }
  }

  #remove(inst: Instance): void {
    const list = inst.version.instances
    const i = list.indexOf(inst)
    if (i >= 0) list.splice(i, 1)
    this.#sources.delete(inst)
    clearTimeout(this.#drainTimers.get(inst))
    this.#drainTimers.delete(inst)
    this.log.info({ instance: inst.url, version: inst.version.name }, 'instance removed')
    void closePool(inst)
  }

  #allInstances(): Instance[] {
    return this.versions.flatMap((v) => v.instances)
  }

  findVersion(name: string): Version | undefined {
    return this.versions.find((v) => v.name === name)
  }
}

function poolOptions(c: Config): PoolOptions {
  return {
    connectMs: c.timeouts.connectMs,
    upstreamMs: c.timeouts.upstreamMs,
    bodyIdleMs: c.timeouts.bodyIdleMs,
    upstreamConnections: c.limits.upstreamConnections,
    maxResponseHeaderBytes: c.limits.maxResponseHeaderBytes,
  }
}

function normalizeUrl(url: string): string {
  try {
    return new URL(url).origin
  } catch {
    return url
  }
}

function instanceOf(list: readonly RuntimeInstance[], url: string): string | undefined {
  return list.find((i) => i.url === url)?.version
}

function summary(c: Config): Record<string, readonly string[]> {
  return Object.fromEntries(c.versions.map((v) => [v.name, v.instances]))
}

/** What a reload cannot change without a restart. */
function reloadProblems(prev: Config, next: Config): Problem[] {
  const out: Problem[] = []
  if (prev.listen.host !== next.listen.host || prev.listen.port !== next.listen.port)
    out.push({ path: 'listen', message: 'cannot change on reload (restart the proxy)' })
  // Certificate files may change on reload; turning TLS or HTTP/2 on or off may not.
  if ((prev.listen.tls === undefined) !== (next.listen.tls === undefined))
    out.push({ path: 'listen.tls', message: 'cannot be added or removed on reload (restart the proxy)' })
  if (prev.listen.http2 !== next.listen.http2 || prev.listen.maxConcurrentStreams !== next.listen.maxConcurrentStreams)
    out.push({ path: 'listen', message: 'http2 settings cannot change on reload (restart the proxy)' })
  if (prev.admin.host !== next.admin.host || prev.admin.port !== next.admin.port)
    out.push({ path: 'admin', message: 'host and port cannot change on reload (restart the proxy)' })
  if (JSON.stringify(prev.redis) !== JSON.stringify(next.redis))
    out.push({ path: 'redis', message: 'cannot change on reload (restart the proxy)' })
  if (prev.state.file !== next.state.file)
    out.push({ path: 'state.file', message: 'cannot change on reload (restart the proxy)' })
  return out
}

function rolloutGauge(r: RolloutState | null): { canary: string; step: number; phase?: RolloutPhaseName } | undefined {
  if (!r || r.canary === null) return undefined
  return { canary: r.canary, step: r.step, phase: rolloutPhaseName(r.status, r.phase) }
}

/** The config's (deeply read-only) mirror section as state data. */
function copyMirror(m: NonNullable<Config['mirror']>): MirrorSection {
  return { ...m, methods: [...m.methods], ignore: [...m.ignore] }
}
