import type { IncomingHttpHeaders } from 'node:http'
import type { OverrideSpec, StickyKeySpec } from '../config/load.js'
import { readCookie } from './cookie.js'
import { hashString, rendezvousScore } from './hash.js'
import type { Instance, Version } from './instance.js'
import { StickyBuckets, stickyScan } from './sticky-buckets.js'

/** No sticky key on the request. Key hashes are uint32, so -1 never collides. */
export const NO_KEY = -1

export interface TableInput {
  versions: readonly Version[]
  weights: Readonly<Record<string, number>>
  sticky: readonly StickyKeySpec[]
  overrides: readonly OverrideSpec[]
  /** A version that must never take user traffic through fallback (the mirror target). */
  shadowVersion?: string | undefined
  /** Slow-start ramp in ms (0 = off) and the clock, for instance shares. */
  slowStartMs?: number
  now?: number
  revision: number
  /** The table this one replaces: its sticky bucket tables are taken over and updated, not rebuilt. */
  previous?: RoutingTable | undefined
}

/** A version as the table sees it: its usable instances and their shares. */
export interface VersionRoute {
  readonly version: Version
  readonly weight: number
  readonly usable: readonly Instance[]
  /** Slow-start factors aligned with `usable`, in (0, 1]. */
  readonly factors: Float64Array
  /** Some factor is below 1 (keyless picks then weigh loads by them). */
  readonly ramping: boolean
  /** 1 / sticky weight, aligned with `usable`: slow-start factors relative to the version's largest, in tenths. */
  readonly invWeights: Float64Array
  /** O(1) sticky picks for this snapshot (see sticky-buckets.ts). */
  readonly sticky: StickyBuckets
}

interface CompiledOverride {
  readonly header: string | undefined
  readonly cookie: string | undefined
  readonly value: string
  readonly route: VersionRoute
}

const MIN_SLOW_START_FACTOR = 0.05
/** Sticky weights move in tenths, so a ramping instance changes the bucket table about ten times, not every rebuild. */
const STICKY_WEIGHT_STEPS = 10

/**
 * An immutable routing snapshot, rebuilt whenever weights, the usable set,
 * drains or slow-start shares change. A request only reads it:
 *  - overrides first (a matched version with nothing usable falls through);
 *  - a sticky key picks the version by weighted rendezvous hashing and the
 *    instance from the version's bucket table (rendezvous hashing over key
 *    buckets, O(1); see sticky-buckets.ts);
 *  - a keyless request walks a precomputed smooth weighted round-robin
 *    sequence (nginx's SWRR) for the version, then takes the less loaded of
 *    two random usable instances (power of two choices, as Envoy's least
 *    request balancer does), O(1) at any instance count.
 * A version with weight but nothing usable passes its share to the others in
 * proportion to their weights (its key draws are simply absent); only if no
 * weighted version is usable do zero-weight versions take the traffic, so
 * the proxy answers 503 only when nothing at all is usable.
 */
export class RoutingTable {
  readonly revision: number
  readonly routes: readonly VersionRoute[]
  readonly weights: Readonly<Record<string, number>>
  readonly #live: VersionRoute[]
  readonly #liveWeights: Float64Array
  readonly #spread: Uint8Array
  #cursor = 0
  readonly #sticky: readonly StickyKeySpec[]
  readonly #overrides: readonly CompiledOverride[]

  constructor(input: TableInput) {
    this.revision = input.revision
    this.weights = input.weights
    this.#sticky = input.sticky
    const slowStartMs = input.slowStartMs ?? 0
    const now = input.now ?? Date.now()
    const previous = input.previous?.routes
    this.routes = input.versions.map((version) => {
      const usable = version.instances.filter((i) => i.usable)
      const factors = new Float64Array(usable.length)
      let ramping = false
      for (let i = 0; i < usable.length; i++) {
        factors[i] = slowStartFactor(usable[i]!, slowStartMs, now)
        if (factors[i]! < 1) ramping = true
      }
      const invWeights = stickyInvWeights(factors)
      const before = previous?.find((r) => r.version === version)?.sticky
      const sticky = StickyBuckets.take(before, usable, invWeights)
      return { version, weight: input.weights[version.name] ?? 0, usable, factors, ramping, invWeights, sticky }
    })
    let live = this.routes.filter((r) => r.weight > 0 && r.usable.length > 0)
    let liveWeights = live.map((r) => r.weight * versionRamp(r.factors))
    if (live.length === 0) {
      // Fail open onto usable zero-weight versions rather than answer 503.
      live = this.routes.filter((r) => r.usable.length > 0 && r.version.name !== input.shadowVersion)
      liveWeights = live.map(() => 1)
    }
    this.#live = live
    this.#liveWeights = Float64Array.from(liveWeights)
    this.#spread = smoothWeightedSequence(liveWeights.map(spreadWeight))
    this.#overrides = input.overrides.flatMap((o) => {
      const route = this.routes.find((r) => r.version.name === o.version)
      if (!route) return []
      return [
        {
          header: o.kind === 'header' ? o.name : undefined,
          cookie: o.kind === 'cookie' ? o.name : undefined,
          value: o.value,
          route,
        },
      ]
    })
  }

  /** True when some version can take a request. */
  get serving(): boolean {
    return this.#live.length > 0
  }

  /** The request's sticky key hashed, or NO_KEY. */
  keyOf(headers: IncomingHttpHeaders): number {
    const specs = this.#sticky
    for (let i = 0; i < specs.length; i++) {
      const s = specs[i]!
      const v = s.kind === 'header' ? headers[s.name] : readCookie(headers.cookie, s.name)
      if (typeof v === 'string' && v.length > 0) return hashString(v)
    }
    return NO_KEY
  }

  chooseVersion(headers: IncomingHttpHeaders, key: number): VersionRoute | undefined {
    const ovr = this.#overrides
    for (let i = 0; i < ovr.length; i++) {
      const o = ovr[i]!
      const v = o.header !== undefined ? headers[o.header] : readCookie(headers.cookie, o.cookie!)
      if (v === o.value && o.route.usable.length > 0) return o.route
    }
    const live = this.#live
    if (live.length <= 1) return live[0]
    if (key === NO_KEY) {
      const seq = this.#spread
      const i = this.#cursor
      this.#cursor = i + 1 === seq.length ? 0 : i + 1
      return live[seq[i]!]
    }
    return this.#live[this.stickyVersionIndex(key)]
  }

  /** Index into the live versions for a key; public for property tests. */
  stickyVersionIndex(key: number): number {
    const live = this.#live
    const weights = this.#liveWeights
    let best = 0
    let bestScore = -1
    for (let i = 0; i < live.length; i++) {
      const score = rendezvousScore(key, live[i]!.version.seed, weights[i]!)
      if (score > bestScore) {
        bestScore = score
        best = i
      }
    }
    return best
  }

  /** An instance of the route, never `exclude` (the one that just failed). */
  chooseInstance(route: VersionRoute, key: number, exclude?: Instance): Instance | undefined {
    const usable = route.usable
    const n = usable.length
    if (n === 0) return undefined
    if (n === 1) return usable[0] === exclude ? undefined : usable[0]
    if (key !== NO_KEY) {
      // Retries (exclude) and snapshots already replaced compute the same answer the long way.
      if (exclude === undefined && route.sticky.live) return route.sticky.pick(key)
      return stickyScan(key, usable, route.invWeights, exclude)
    }
    // Power of two choices: two distinct random instances, the one with fewer
    // in flight (relative to its slow-start factor) wins; ties go to the
    // first, itself random. With two instances this is least in flight.
    const i = randomBelow(n)
    let j = randomBelow(n - 1)
    if (j >= i) j++
    const a = usable[i]!
    const b = usable[j]!
    if (a === exclude) return b
    if (b === exclude) return a
    if (!route.ramping) return b.inflight < a.inflight ? b : a
    const factors = route.factors
    return (b.inflight + 1) * factors[i]! < (a.inflight + 1) * factors[j]! ? b : a
  }

  /**
   * For a retry: another usable instance of the same version; when it has
   * none, the failed instance again while it is still usable (a try that
   * failed moves no request to another version), unless it refused the
   * connection (`refused`: it is down, probes will take it out) and only
   * then any live version's instance. This table may be older than an
   * ejection or return that came since the request began, so the live
   * facts of the failed instance's version decide.
   */
  chooseRetry(route: VersionRoute, key: number, failed: Instance, refused = false): Instance | undefined {
    const same = this.chooseInstance(route, key, failed)
    if (same?.usable) return same
    const other = leastInflightUsable(failed.version.instances, failed)
    if (other !== undefined) return other
    if (!refused && failed.usable) return failed
    for (const r of this.#live) {
      if (r === route) continue
      const other = this.chooseInstance(r, key, failed)
      if (other !== undefined) return other
    }
    return undefined
  }

  /** Whether slow start is still ramping some instance (the table must be rebuilt to advance it). */
  get ramping(): boolean {
    for (const r of this.routes) for (let i = 0; i < r.factors.length; i++) if (r.factors[i]! < 1) return true
    return false
  }
}

/** Off the hot path (a retry): the usable instance with the least in flight, never `exclude`. */
function leastInflightUsable(instances: readonly Instance[], exclude: Instance): Instance | undefined {
  let best: Instance | undefined
  for (const i of instances) {
    if (i !== exclude && i.usable && (best === undefined || i.inflight < best.inflight)) best = i
  }
  return best
}

/** xorshift32: keyless picks need cheap, not cryptographic, randomness. */
let rngState = (Math.random() * 0xffffffff) >>> 0 || 1

/** A uniform integer in [0, n). */
function randomBelow(n: number): number {
  let x = rngState
  x ^= x << 13
  x ^= x >>> 17
  x ^= x << 5
  rngState = x >>> 0
  return Math.floor(rngState * n * (1 / 4294967296))
}

/**
 * 1/w for sticky picks: each factor relative to the version's largest (only
 * relative weights matter to rendezvous hashing, so instances ramping
 * together change nothing), rounded down to a tenth (so a ramp changes the
 * bucket table about ten times) and never below the slow-start floor.
 */
function stickyInvWeights(factors: Float64Array): Float64Array {
  const out = new Float64Array(factors.length)
  let max = 0
  for (let i = 0; i < factors.length; i++) if (factors[i]! > max) max = factors[i]!
  for (let i = 0; i < factors.length; i++) {
    const steps = Math.floor((factors[i]! / max) * STICKY_WEIGHT_STEPS)
    out[i] = 1 / Math.max(steps / STICKY_WEIGHT_STEPS, MIN_SLOW_START_FACTOR)
  }
  return out
}

function slowStartFactor(inst: Instance, slowStartMs: number, now: number): number {
  if (slowStartMs <= 0 || inst.usableSince === 0) return 1
  const f = (now - inst.usableSince) / slowStartMs
  return f >= 1 ? 1 : Math.max(f, MIN_SLOW_START_FACTOR)
}

/**
 * A version whose usable instances are all still ramping (it had none, or
 * all just recovered) ramps its share too, so a cold canary is not flooded:
 * weight x min(1, sum of factors). One warm instance keeps the full share.
 * A growing share only ever moves sticky keys onto the version.
 */
function versionRamp(factors: Float64Array): number {
  let sum = 0
  for (let i = 0; i < factors.length; i++) sum += factors[i]!
  return Math.min(sum, 1)
}

/** The round-robin sequence takes whole percents; a live version keeps at least one slot. */
function spreadWeight(w: number): number {
  return w < 1 ? 1 : Math.round(w)
}

/**
 * nginx's smooth weighted round-robin, unrolled once into a sequence of
 * indices of length sum(weights): exact shares, evenly interleaved, O(1) per
 * pick. Weights are integer percents, so the sequence is at most 100 long
 * (at most the number of versions when failing open).
 */
export function smoothWeightedSequence(weights: readonly number[]): Uint8Array {
  const total = weights.reduce((a, b) => a + b, 0)
  const seq = new Uint8Array(Math.max(total, 0))
  const current = weights.map(() => 0)
  for (let s = 0; s < total; s++) {
    let best = 0
    for (let i = 0; i < weights.length; i++) {
      current[i]! += weights[i]!
      if (current[i]! > current[best]!) best = i
    }
    current[best]! -= total
    seq[s] = best
  }
  return seq
}
