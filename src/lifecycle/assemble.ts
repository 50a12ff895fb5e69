/**
 * The one place a proxy process is put together: the core (lifecycle/sluice.ts:
 * versions, routing table, control, data listener, probes) and every feature
 * around it. Each feature gets a narrow host interface of what it needs, not
 * the whole core; its hooks are registered here and nowhere else, and the
 * core imports none of them. The one data-path tap (mirroring) is set
 * through `listener.setTap`.
 *
 * Order. Built and wired first (routes, hooks, the upgrade handler), so
 * nothing can miss the first routing table; then started in the order of
 * `parts` below; stopped in exactly the reverse order, one after the
 * other. The core and the admin listener frame the features: the core
 * loads the state before the features that read it start; on stop it first
 * turns /readyz to 503 and takes no new connection (`beginStop`), the
 * features stop while in-flight work drains (WebSocket clients get their
 * 1001), and the core closes last but the admin listener, which closes
 * after it so /readyz answers 503 through the drain.
 *
 * Primary and workers. Every part here takes the core only through its host
 * interface, so a later split reuses them as they are: a primary process
 * assembles the store, control, probes, the admin API, shared analysis and
 * the rollout driver; each of N worker processes assembles a listener, its
 * routing table (rebuilt from the desired state the primary sends), the
 * WebSocket gateway and the mirror. What crosses between them is the
 * desired state (state/types.ts, plain data) and the outcome slices that
 * shared analysis already publishes. `assemble` with `workers` builds the
 * primary (its pool: worker-pool.ts), `assembleWorker` a worker (worker.ts
 * runs it); without `workers` one process is both, as before. The parts
 * only a primary runs (admin API, rollout driver, discovery, the store with
 * ioredis, the pool) are imported by `assemble` when it runs, not by this
 * module: a worker loads only what it serves with, so a rolling restart's
 * fresh worker spends less CPU booting next to the workers serving traffic.
 */
import type { Logger } from 'pino'
import type { AdminServer } from '../admin/server.js'
import type { Config } from '../config/load.js'
import { Mirror } from '../mirror/mirror.js'
import type { RolloutDriver } from '../rollout/driver.js'
import type { Version } from '../routing/instance.js'
import type { StateStore } from '../state/store.js'
import { WebSocketGateway } from '../websocket/gateway.js'
import { Sluice } from './sluice.js'
import type { WorkerPool } from './worker-pool.js'

/** A feature with a lifecycle: started in order, stopped in reverse. */
interface Part {
  readonly name: string
  start?(): void | Promise<void>
  stop?(): void | Promise<void>
}

export interface Assembled {
  readonly sluice: Sluice
  readonly admin: AdminServer
  readonly mirror: Mirror
  readonly rollout: RolloutDriver
  readonly gateway: WebSocketGateway
  /** The workers serving the public listener, when there are (`workers` set). */
  readonly pool: WorkerPool | undefined
  /** Starts everything; on a failure, stops what started and throws. */
  start(): Promise<{ port: number; adminPort: number }>
  /** Graceful stop; a second call waits on the same stop. */
  stop(): Promise<void>
}

export async function assemble(
  config: Config,
  opts: { log: Logger; store?: StateStore; workers?: number },
): Promise<Assembled> {
  const [
    { TokenCheck },
    { instancesRoutes },
    { mirrorRoutes },
    { restartRoutes },
    { rolloutRoutes },
    { coreRoutes },
    { AdminServer },
    { stateView },
    { Discovery },
    { RolloutDriver },
    { createStore },
    { SharedAnalysis },
    { WorkerPool },
  ] = await Promise.all([
    import('../admin/auth.js'),
    import('../admin/instances-routes.js'),
    import('../admin/mirror-routes.js'),
    import('../admin/restart-routes.js'),
    import('../admin/rollout-routes.js'),
    import('../admin/routes.js'),
    import('../admin/server.js'),
    import('../admin/state-view.js'),
    import('../discovery/discovery.js'),
    import('../rollout/driver.js'),
    import('../state/store-factory.js'),
    import('./shared-analysis.js'),
    import('./worker-pool.js'),
  ])
  const log = opts.log
  const role = opts.workers === undefined ? 'single' : 'primary'
  const sluice = new Sluice(config, { log, store: opts.store ?? createStore(config, log), role })
  const pool = opts.workers === undefined ? undefined : new WorkerPool(sluice, opts.workers)
  // Every rebuild of the primary's table (a change, health, discovery) goes to the workers.
  if (pool) sluice.hooks.push({ onTable: () => pool.broadcast() })

  const gateway = new WebSocketGateway(sluice)
  sluice.listener.server.on('upgrade', (req, socket, head) => gateway.upgrade(req, socket, head))
  sluice.hooks.push(gateway)

  const mirror = new Mirror(sluice)
  sluice.hooks.push({ onTable: (t) => mirror.onTable(t) })

  const discovery = new Discovery(sluice)
  sluice.hooks.push({ onConfig: (c) => discovery.onConfig(c) })
  sluice.readiness.push(() => discovery.answered)

  // With a shared store the verdict is computed on every proxy's traffic; with workers, on all of theirs.
  const own = pool && ((v: Version) => pool.slices(v))
  const shared = sluice.store.kind === 'redis' ? new SharedAnalysis(sluice, own) : undefined
  const slices = shared ? (v: Version) => shared.slices(v) : own
  // With workers, the mirror phase is judged on the copies every worker made.
  const mirrorFigures = pool ? { figuresSince: (from: number) => pool.mirrorFigures(from) } : mirror
  const rollout = new RolloutDriver(sluice, { mirror: mirrorFigures, ...(slices && { slices }) })

  const tokens = new TokenCheck(config.admin.tokens)
  if (tokens.open) log.warn('admin API has no token: /v1/* is open to anyone who can reach the admin listener')
  const admin = new AdminServer(tokens, log)
  const mirrorView = pool ? { view: () => pool.mirrorView(mirror.view()) } : mirror
  const view = () => stateView(sluice, mirrorView, pool)
  coreRoutes(admin, sluice, view)
  instancesRoutes(admin, sluice, view)
  rolloutRoutes(admin, rollout, view)
  mirrorRoutes(admin, mirror, view)
  restartRoutes(admin, pool, view)
  if (pool) {
    admin.settle = () => pool.settled()
    admin.route('GET', '/v1/mirror', () => ({ status: 200, body: mirrorView.view() }))
    admin.route('GET', '/v1/mirror/mismatches', () => ({ status: 200, body: { mismatches: pool.mismatches() } }))
    admin.route('GET', '/metrics', async () => ({
      status: 200,
      body: await pool.metricsText(),
      headers: { 'content-type': sluice.metrics.registry.contentType },
    }))
  }

  let port = 0
  let adminPort = 0
  const parts: Part[] = [
    { name: 'websockets', stop: () => gateway.stop() },
    { name: 'mirror', stop: () => mirror.stop() },
    // Before the core loads the state, so that its first answers are applied with it.
    { name: 'discovery', start: () => discovery.start(), stop: () => discovery.stop() },
    {
      name: 'core',
      start: async () => {
        ;({ port } = await sluice.start())
      },
      // Its drain and close come after every feature stopped (see stop below).
      stop: () => sluice.beginStop(),
    },
    ...(pool
      ? [
          {
            name: 'workers',
            start: async () => {
              port = await pool.start()
            },
            stop: () => pool.stop(),
          },
        ]
      : []),
    {
      name: 'admin',
      start: async () => {
        adminPort = await admin.listen(config.admin.host, config.admin.port)
      },
    },
    ...(shared ? [{ name: 'shared analysis', start: () => shared.start(), stop: () => shared.stop() }] : []),
    { name: 'rollout driver', start: () => rollout.start(), stop: () => rollout.stop() },
  ]
  const started: Part[] = []

  async function stopAll(): Promise<void> {
    sluice.beginStop()
    for (const part of started.reverse()) {
      try {
        await part.stop?.()
      } catch (err) {
        log.error({ err, part: part.name }, 'stopping a part failed')
      }
    }
    started.length = 0
    await sluice.stop()
    await admin.close()
  }

  let stopped: Promise<void> | undefined
  return {
    sluice,
    admin,
    mirror,
    rollout,
    gateway,
    pool,
    async start() {
      try {
        for (const part of parts) {
          started.push(part)
          await part.start?.()
        }
      } catch (err) {
        stopped ??= stopAll()
        await stopped
        throw err
      }
      return { port, adminPort }
    },
    stop() {
      stopped ??= stopAll()
      return stopped
    },
  }
}

export interface AssembledWorker {
  readonly sluice: Sluice
  readonly mirror: Mirror
  start(): Promise<{ port: number }>
  /** Graceful stop: WebSockets get 1001 at once. */
  stop(): Promise<void>
  /**
   * Self-upgrade: stops accepting at once, finishes in-flight requests, lets
   * its kept-alive clients go (see RETIRE_SPREAD_MS: never by closing an idle
   * connection under them), and keeps WebSockets relaying until they end or
   * drain.timeoutMs, then stops.
   */
  retire(): Promise<void>
  /** A stop during a retire: idle connections and WebSockets are closed now, as in stop(). */
  hurry(): void
}

/** A worker: the data listener, the WebSocket gateway and the mirror, fed by the primary through `store`. */
export function assembleWorker(config: Config, opts: { log: Logger; store: StateStore }): AssembledWorker {
  const sluice = new Sluice(config, { log: opts.log, store: opts.store, role: 'worker' })
  const gateway = new WebSocketGateway(sluice)
  sluice.listener.server.on('upgrade', (req, socket, head) => gateway.upgrade(req, socket, head))
  sluice.hooks.push(gateway)
  const mirror = new Mirror(sluice)
  sluice.hooks.push({ onTable: (t) => mirror.onTable(t) })
  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      sluice.beginStop()
      gateway.stop()
      await mirror.stop()
      await sluice.stop()
    })())
  return {
    sluice,
    mirror,
    async start() {
      return sluice.start()
    },
    stop,
    async retire() {
      const timeoutMs = sluice.config.drain.timeoutMs
      sluice.forwardContext.stopSpread = { since: performance.now(), ms: Math.min(RETIRE_SPREAD_MS, timeoutMs) }
      // The listener destroys what is left at its deadline: leave the WebSockets' 1001 handshake time first, and
      // the idle connections their keep-alive timeout (Node closes them at clientIdleMs plus up to a second).
      const idleMs = sluice.config.timeouts.clientIdleMs + KEEP_ALIVE_EXPIRY_MS
      void sluice.listener.close(Math.max(timeoutMs, idleMs) + CLOSE_HANDSHAKE_MS)
      sluice.beginStop()
      const until = Date.now() + timeoutMs
      while (Date.now() < until && sluice.versions.some((v) => v.websockets > 0)) {
        await new Promise((resolve) => setTimeout(resolve, RETIRE_POLL_MS))
      }
      await stop()
    },
    hurry() {
      sluice.forwardContext.stopSpread = undefined
      void stop()
    },
  }
}

/**
 * Over how long a retiring worker lets its kept-alive HTTP clients go (each
 * closes after a response at its own moment in this span): all at once, they
 * would all land on a fresh worker whose code V8 has not optimised yet. An
 * idle connection is not closed at its moment: that races the request the
 * client may be writing on it (measured: one reset request in 4 of 10
 * restart benches of 105,000 requests). It stays until its client sends a request
 * (answered with `Connection: close`) or closes it, as clients that honour the
 * `Keep-Alive: timeout` hint do before that timeout (undici 2 s before), or
 * until timeouts.clientIdleMs closes it as any idle connection.
 */
const RETIRE_SPREAD_MS = 1_000
/** Past clientIdleMs, when Node has closed an idle keep-alive connection (it adds up to a second). */
const KEEP_ALIVE_EXPIRY_MS = 1_000
/** How often a retiring worker looks whether its last WebSocket ended. */
const RETIRE_POLL_MS = 100
/** After a retiring worker's WebSockets get 1001, how long their close handshake may take. */
const CLOSE_HANDSHAKE_MS = 1_000
