import { type Logger, pino } from 'pino'
import { toSparse } from '../analysis/histogram.js'
import { logOptions } from '../cli/log.js'
import { findInstance } from '../routing/instance.js'
import { assembleWorker, type AssembledWorker } from './assemble.js'
import { FollowerStore } from './follower-store.js'
import type { FromWorker, MirrorReport, ReportMessage, StateMessage, ToWorker } from './worker-messages.js'
import { type MetricJson, WORKER_SUMMED } from './worker-pool.js'

/**
 * One worker process (README "Workers and self-upgrade"): it serves the
 * public listener with the desired state, config and health the primary
 * sends, acknowledges each, and reports its figures every analysis
 * interval. It owns nothing shared: it never commits a change, never
 * probes, never answers the admin API. When the primary goes away the
 * worker stops too (no orphans).
 */
export function runWorker(): void {
  let proxy: AssembledWorker | undefined
  let store: FollowerStore | undefined
  let log: Logger | undefined
  let configGeneration = -1
  let reportTimer: NodeJS.Timeout | undefined
  let leaving: Promise<void> | undefined
  // Messages are handled one after the other: the first state starts the proxy, later ones wait for that.
  let queue: Promise<void> = Promise.resolve()

  const send = (m: FromWorker): void => {
    if (process.connected) process.send!(m)
  }

  const applyState = async (msg: StateMessage): Promise<void> => {
    const p = proxy!
    const s = p.sluice
    if (msg.desired.configGeneration !== configGeneration) {
      configGeneration = msg.desired.configGeneration
      s.adoptConfig(msg.config)
      // A reload re-reads the certificates here too before the ack, as a single process does before it answers.
      const tls = msg.config.listen.tls
      if (tls !== undefined) await s.listener.certificates?.reload(tls)
    }
    for (const [name, d] of Object.entries(msg.discovered)) s.setDiscovered(name, d)
    store!.receive(msg.desired)
    applyHealth(msg)
  }

  const applyHealth = (msg: StateMessage): void => {
    const s = proxy!.sluice
    const byUrl = new Map(msg.health.map((h) => [h[0], h]))
    let changed = false
    for (const v of s.versions) {
      for (const i of v.instances) {
        const h = byUrl.get(i.url)
        if (h === undefined) continue
        if (i.healthy !== h[1] || i.probed !== h[2] || i.usableSince !== h[3]) changed = true
        i.healthy = h[1]
        i.probed = h[2]
        i.usableSince = h[3]
        // The proxy's ejections, as the primary recorded them (a started or replaced worker gets them here too).
        if (s.outlier.follow(i, h[4])) changed = true
      }
    }
    if (changed) s.rebuild()
  }

  const start = async (msg: StateMessage): Promise<void> => {
    configGeneration = msg.desired.configGeneration
    log = pino(logOptions(msg.config.log.level), pino.destination({ dest: 1, sync: true })).child({
      worker: process.pid,
    })
    store = new FollowerStore(msg.desired)
    proxy = assembleWorker(msg.config, { log, store })
    // Ejections on this worker's traffic take effect here at once; the primary decides them for the proxy.
    proxy.sluice.outlier.followPrimary((i, until, why) => send({ t: 'ejected', url: i.url, until, why }))
    for (const [name, d] of Object.entries(msg.discovered)) proxy.sluice.setDiscovered(name, d)
    // Health before the first connection: a worker never answers 503 for instances the primary knows are up.
    proxy.sluice.hooks.push({ onLoaded: () => applyHealth(msg) })
    const { port } = await proxy.start()
    reportTimer = setInterval(() => send(report()), msg.config.analysis.intervalMs)
    reportTimer.unref()
    send({ t: 'ack', seq: msg.seq })
    send({ t: 'serving', port })
  }

  const report = (): ReportMessage => {
    const s = proxy!.sluice
    const now = Date.now()
    const r: ReportMessage = { t: 'report', slices: {}, versions: {}, instances: [] }
    for (const v of s.versions) {
      const w = s.outcomes.window(v)
      w.tick(now)
      r.slices[v.name] = w.exportSlices()
      r.versions[v.name] = [v.requestsTotal, v.errorsTotal, v.inflight, v.websockets]
      for (const i of v.instances) {
        // The peer sweep's counts go to the primary, which judges every worker's sum.
        r.instances.push([i.url, i.inflight, i.websockets, i.windowRequests, i.windowFailures])
        i.windowRequests = 0
        i.windowFailures = 0
      }
    }
    const mirror = mirrorReport()
    if (mirror) r.mirror = mirror
    const mismatches = proxy!.mirror.newMismatches()
    if (mismatches.length > 0) r.mismatches = mismatches
    return r
  }

  const mirrorReport = (): MirrorReport | undefined => {
    const stats = proxy!.mirror.stats
    if (stats === undefined) return undefined
    const { shadow, primary, ...totals } = stats.totalCounts()
    const out: MirrorReport = { totals, shadow: toSparse(shadow, 0), primary: toSparse(primary, 0) }
    // The rollout's mirror phase is judged on the copies since it began (the driver asks from the same moment).
    const rollout = store!.current().rollout
    if (rollout?.status === 'progressing' && rollout.phase === 'mirror') {
      const fromMs = rollout.stepStartedAt ?? 0
      const c = stats.countsSince(fromMs)
      out.phase = { fromMs, judged: c.judged, bad: c.bad, shadow: toSparse(c.shadow, 0), primary: toSparse(c.primary, 0) }
    }
    return out
  }

  const counters = async (): Promise<MetricJson[]> => {
    const all = await proxy!.sluice.metrics.registry.getMetricsAsJSON()
    return all.filter((m) => WORKER_SUMMED.has(m.name))
  }

  /** Leaves (stop, retire, or the primary gone): the last counters to the primary, then exit 0. */
  const leave = (how: 'stop' | 'retire'): Promise<void> => {
    // A stop while retiring (the proxy stops, or the primary went away) need not wait on the clients' idle connections.
    if (how === 'stop' && leaving !== undefined) proxy?.hurry()
    leaving ??= (async () => {
      if (proxy) {
        // Reports go on while it leaves: a retiring worker may still answer its idle clients' last requests.
        await (how === 'retire' ? proxy.retire() : proxy.stop())
        clearInterval(reportTimer)
        const final: FromWorker = { t: 'final', json: await counters(), report: report() }
        log?.info({ how }, 'worker exiting')
        // Exit once the last counters are on their way: an exit right after send() can drop them.
        if (process.connected) {
          process.send!(final, undefined, {}, () => process.exit(0))
          return
        }
      }
      log?.info({ how }, 'worker exiting')
      process.exit(0)
    })()
    return leaving
  }

  const handle = async (msg: ToWorker): Promise<void> => {
    switch (msg.t) {
      case 'state':
        if (leaving) return
        if (proxy === undefined) await start(msg)
        else {
          await applyState(msg)
          send({ t: 'ack', seq: msg.seq })
        }
        return
      case 'stopping':
        if (proxy) proxy.sluice.forwardContext.stopping = true
        return
      case 'stop':
      case 'retire':
        void leave(msg.t)
        return
      case 'metrics':
        send({ t: 'metrics', id: msg.id, json: proxy ? await counters() : [] })
        return
      case 'reinstate': {
        const s = proxy?.sluice
        const i = s && findInstance(s.versions, msg.url)
        if (i) s.outlier.reinstate(i)
        return
      }
    }
  }

  process.on('message', (msg: ToWorker) => {
    queue = queue.then(() => handle(msg)).catch((err: unknown) => {
      process.stderr.write(`worker failed: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exit(1)
    })
  })
  // The primary went away (killed, crashed): finish what is in flight and go, never an orphan.
  process.on('disconnect', () => void leave('stop'))
  // Signals are the primary's to act on: a terminal's Ctrl-C or a whole process group's SIGTERM reaches every
  // worker too, and the primary then stops them in order.
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'] as const) process.on(s, () => {})
  send({ t: 'hello' })
}
