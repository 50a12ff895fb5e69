import type { Dispatcher } from 'undici'
import { hashString } from './hash.js'

/**
 * One upstream origin in a version, with the live facts routing needs.
 * Counters are mutated in place by the data path (in flight) and by health
 * (healthy, ejected, draining); the routing table is rebuilt whenever one of
 * the usability facts changes, so a request never evaluates them itself.
 */
export class Instance {
  readonly seed: number
  inflight = 0
  websockets = 0
  /** Active probes say so; true from the start when probing is off. */
  healthy: boolean
  /** Set once the first probe round ends, so readyz knows. */
  probed = false
  draining = false
  /** Passive ejection from live traffic, until this epoch ms (0 = not ejected). */
  ejectedUntil = 0
  consecutiveFailures = 0
  /** Requests and failures since outlier detection's last peer comparison. */
  windowRequests = 0
  windowFailures = 0
  /** When it last became usable (epoch ms), for slow start. */
  usableSince = 0
  /** Set by the upstream pool registry. */
  pool: UpstreamPool | undefined

  constructor(
    readonly url: string,
    readonly version: Version,
    healthy: boolean,
  ) {
    this.seed = hashString(url)
    this.healthy = healthy
  }

  get ejected(): boolean {
    return this.ejectedUntil !== 0
  }

  /** Healthy, not ejected and not draining (README, Proxying rules). */
  get usable(): boolean {
    return this.healthy && this.ejectedUntil === 0 && !this.draining && !this.version.draining
  }
}

/** An instance's connections: undici's Pool, or the HTTP/2 pool (proxy/h2-pool.ts), both dispatched to alike. */
export interface UpstreamPool {
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean
  close(): Promise<void>
  destroy(err: Error): Promise<void>
  readonly closed: boolean
  readonly destroyed: boolean
}

/**
 * How a version's instances are spoken to (README "Upstream TLS and
 * HTTP/2"): the URL's scheme says whether TLS is used, `protocol` which
 * HTTP. The pools and the probes build their connections from it.
 */
export interface UpstreamTransport {
  readonly protocol: 'http1' | 'h2c' | 'h2'
  /** `tls.ca`'s PEM text, read when the config loads: it replaces the system roots. */
  readonly ca: string | undefined
  readonly servername: string | undefined
  readonly verify: boolean
}

export const PLAIN_HTTP1: UpstreamTransport = Object.freeze({
  protocol: 'http1',
  ca: undefined,
  servername: undefined,
  verify: true,
})

export function sameTransport(a: UpstreamTransport, b: UpstreamTransport): boolean {
  return a.protocol === b.protocol && a.ca === b.ca && a.servername === b.servername && a.verify === b.verify
}

/** The instance at `url` in any of `versions` (control-plane lookups; never per request). */
export function findInstance(versions: readonly Version[], url: string): Instance | undefined {
  for (const v of versions) for (const i of v.instances) if (i.url === url) return i
  return undefined
}

/** A named pool of instances running one release. Lives as long as its config. */
export class Version {
  readonly seed: number
  transport: UpstreamTransport = PLAIN_HTTP1
  /** Whether its instances are reached over HTTP/2 (h2c or h2): gRPC needs it. */
  http2 = false
  readonly instances: Instance[] = []
  draining = false
  /** Requests in flight across the version's instances (gauge and state). */
  inflight = 0
  /** Requests and errors answered since start (a running total; the window has the recent figures). */
  requestsTotal = 0
  errorsTotal = 0
  websockets = 0

  constructor(
    readonly name: string,
    /** Position in declared order; arrays indexed by it replace map lookups on the hot path. */
    readonly index: number,
  ) {
    this.seed = hashString(`version:${name}`)
  }
}
