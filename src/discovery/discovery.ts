import { Resolver } from 'node:dns/promises'
import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import type { SluiceHooks } from '../lifecycle/hooks.js'
import type { Metrics } from '../metrics/metrics.js'
import { DnsDiscovery } from './dns-discovery.js'
import type { Discovered } from './membership.js'

/** What discovery needs of a proxy (the core has all of it): where its answers go. */
export interface DiscoveryHost {
  readonly config: Config
  readonly log: Logger
  readonly metrics: Pick<Metrics, 'discoveryErrors'>
  setDiscovered(version: string, discovered: Discovered): void
}

/** How many times one query is sent before it counts as failed (c-ares' default is 4). */
const TRIES = 2

/**
 * The process's discovery: one resolver (resolver.servers) and one watcher
 * per discovering version, feeding the proxy's membership from the side
 * (Sluice.setDiscovered). /readyz waits until every watcher had an answer.
 * A reload restarts the watchers whose discover section (or the resolver)
 * changed and leaves the others running.
 */
export class Discovery implements SluiceHooks {
  readonly #sluice: DiscoveryHost
  readonly #watchers = new Map<string, { key: string; watcher: DnsDiscovery }>()
  #resolver: Resolver | undefined
  #resolverKey = ''
  /** Versions that had an answer before their lookup was restarted by a reload: readyz does not go back to 503. */
  readonly #answeredBefore = new Set<string>()
  #stopped = false

  constructor(sluice: DiscoveryHost) {
    this.#sluice = sluice
  }

  /** Every discovering version has had a DNS response. */
  get answered(): boolean {
    for (const [name, { watcher }] of this.#watchers)
      if (!watcher.answered && !this.#answeredBefore.has(name)) return false
    return true
  }

  start(): void {
    this.#sync(this.#sluice.config)
  }

  onConfig(config: Config): void {
    if (!this.#stopped) this.#sync(config)
  }

  stop(): void {
    this.#stopped = true
    for (const { watcher } of this.#watchers.values()) watcher.stop()
    this.#watchers.clear()
    this.#resolver?.cancel()
  }

  #sync(config: Config): void {
    const before = new Set(this.#watchers.keys())
    const resolverKey = JSON.stringify(config.resolver)
    if (resolverKey !== this.#resolverKey) {
      for (const name of [...this.#watchers.keys()]) this.#stopWatcher(name)
      this.#resolver?.cancel()
      this.#resolver = undefined
      this.#resolverKey = resolverKey
    }
    const wanted = new Map(config.versions.flatMap((v) => (v.discover ? [[v.name, v.discover] as const] : [])))
    for (const [name, w] of this.#watchers) {
      if (JSON.stringify(wanted.get(name)) === w.key) continue
      this.#stopWatcher(name)
    }
    // A version that no longer discovers loses its discovered instances (they drain).
    for (const name of before) if (!wanted.has(name)) this.#sluice.setDiscovered(name, { source: 'dns', urls: [] })
    for (const [name, spec] of wanted) {
      if (this.#watchers.has(name)) continue
      const watcher = new DnsDiscovery({
        version: name,
        spec,
        resolver: this.#resolverFor(config),
        log: this.#sluice.log,
        onAddresses: (d) => this.#sluice.setDiscovered(name, d),
        onError: () => this.#sluice.metrics.discoveryErrors.inc({ version: name }),
      })
      this.#watchers.set(name, { key: JSON.stringify(spec), watcher })
      this.#sluice.metrics.discoveryErrors.inc({ version: name }, 0)
      watcher.start()
    }
  }

  #stopWatcher(name: string): void {
    const w = this.#watchers.get(name)
    if (!w) return
    w.watcher.stop()
    if (w.watcher.answered) this.#answeredBefore.add(name)
    this.#watchers.delete(name)
  }

  #resolverFor(config: Config): Resolver {
    if (this.#resolver) return this.#resolver
    const r = new Resolver({ timeout: config.resolver.timeoutMs, tries: TRIES })
    if (config.resolver.servers) r.setServers([...config.resolver.servers])
    this.#resolver = r
    return r
  }
}
