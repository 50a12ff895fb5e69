import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { hashString } from '../../../src/routing/hash.js'
import { Instance, Version } from '../../../src/routing/instance.js'
import { stickyScan } from '../../../src/routing/sticky-buckets.js'
import { NO_KEY, RoutingTable, type VersionRoute } from '../../../src/routing/table.js'

const NOW = 1_000_000
const SLOW_START_MS = 10_000
const KEYS = Array.from({ length: 4000 }, (_, i) => hashString(`user-${i}`))

let nextPort = 30000
function addInstance(v: Version): Instance {
  const inst = new Instance(`http://127.0.0.1:${nextPort++}`, v, true)
  v.instances.push(inst)
  return inst
}

function version(n: number, name = 'blue', index = 0): Version {
  const v = new Version(name, index)
  for (let i = 0; i < n; i++) addInstance(v)
  return v
}

function build(versions: Version[], previous?: RoutingTable, weights?: Record<string, number>): RoutingTable {
  return new RoutingTable({
    versions,
    weights: weights ?? Object.fromEntries(versions.map((v) => [v.name, 100 / versions.length])),
    sticky: [{ kind: 'header', name: 'x-user-id' }],
    overrides: [],
    slowStartMs: SLOW_START_MS,
    now: NOW,
    revision: 1,
    previous,
  })
}

/** The instance URL each key lands on within the route (undefined: nothing usable). */
function picks(t: RoutingTable, route: VersionRoute, keys: readonly number[] = KEYS): (string | undefined)[] {
  return keys.map((k) => t.chooseInstance(route, k)?.url)
}

/** The definition: every instance's score for the key's bucket computed, no table. */
function reference(route: VersionRoute, keys: readonly number[] = KEYS): (string | undefined)[] {
  return keys.map((k) => stickyScan(k, route.usable, route.invWeights, undefined)?.url)
}

type Op =
  | { kind: 'drain' | 'eject' | 'unhealthy' | 'remove' | 'restore' | 'ramp'; at: number; ms: number }
  | { kind: 'add' }
  | { kind: 'mass'; at: number; ms: number }

/** One change of an instance's usability or slow-start age (the facts a rebuild reads). */
function apply(v: Version, removed: Instance[], op: Op): void {
  const all = v.instances
  if (op.kind === 'add') {
    const inst = addInstance(v)
    inst.usableSince = NOW - 1000
    return
  }
  if (op.kind === 'mass') {
    // Many instances at once: more changes than the table applies bucket by bucket.
    for (let i = op.at % 3; i < all.length; i += 2) {
      all[i]!.draining = !all[i]!.draining
      all[i]!.usableSince = NOW - op.ms
    }
    return
  }
  const inst = all[op.at % all.length]
  if (inst === undefined) return
  switch (op.kind) {
    case 'drain':
      inst.draining = true
      break
    case 'eject':
      inst.ejectedUntil = NOW + 1000
      break
    case 'unhealthy':
      inst.healthy = false
      break
    case 'remove':
      all.splice(all.indexOf(inst), 1)
      removed.push(inst)
      break
    case 'restore':
      // Back to usable, ramping from where slow start begins.
      inst.draining = false
      inst.ejectedUntil = 0
      inst.healthy = true
      inst.usableSince = NOW - op.ms
      break
    case 'ramp':
      inst.usableSince = NOW - op.ms
      break
  }
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constantFrom('drain', 'eject', 'unhealthy', 'remove', 'restore', 'restore', 'ramp', 'ramp'),
    at: fc.nat(),
    ms: fc.integer({ min: 0, max: 2 * SLOW_START_MS }),
  }),
  fc.constant({ kind: 'add' as const }),
  fc.record({ kind: fc.constant('mass' as const), at: fc.nat(), ms: fc.integer({ min: 0, max: SLOW_START_MS }) }),
)

describe('sticky bucket table', () => {
  it('a table updated change by change answers every key exactly as computing every score would', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 24 }),
        fc.array(fc.array(opArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 10 }),
        (n, steps) => {
          const v = version(n)
          const removed: Instance[] = []
          let t = build([v])
          picks(t, t.routes[0]!) // fill the buckets the keys use, so updates have entries to keep right
          for (const step of steps) {
            for (const op of step) apply(v, removed, op)
            const next = build([v], t)
            const route = next.routes[0]!
            expect(picks(next, route)).toEqual(reference(route))
            // and a fresh table (no history) agrees: the answer depends on the facts, not the order of changes
            const fresh = build([v])
            expect(picks(fresh, fresh.routes[0]!)).toEqual(reference(route))
            t = next
          }
        },
      ),
      { numRuns: 60 },
    )
  })

  it('one instance leaving or joining moves only that instance keys', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }),
        fc.array(fc.record({ kind: fc.constantFrom('drain', 'eject', 'unhealthy', 'remove', 'back'), at: fc.nat() }), {
          minLength: 1,
          maxLength: 12,
        }),
        (n, ops) => {
          const v = version(n)
          const out: Instance[] = []
          let t = build([v])
          let before = picks(t, t.routes[0]!)
          for (const op of ops) {
            let changed: Instance
            let joined: boolean
            if (op.kind === 'back' && out.length > 0) {
              joined = true
              changed = out.splice(op.at % out.length, 1)[0]!
              changed.draining = false
              changed.ejectedUntil = 0
              changed.healthy = true
              if (!v.instances.includes(changed)) v.instances.push(changed)
            } else {
              const usable = v.instances.filter((i) => i.usable)
              if (usable.length <= 1 || op.kind === 'back') continue
              changed = usable[op.at % usable.length]!
              if (op.kind === 'drain') changed.draining = true
              else if (op.kind === 'eject') changed.ejectedUntil = NOW + 1000
              else if (op.kind === 'unhealthy') changed.healthy = false
              else v.instances.splice(v.instances.indexOf(changed), 1)
              out.push(changed)
              joined = false
            }
            t = build([v], t)
            const after = picks(t, t.routes[0]!)
            const wrong: string[] = []
            for (let k = 0; k < KEYS.length; k++) {
              // A leaver's keys must move, nobody else's; a joiner takes keys, nobody else's move.
              const ok = joined
                ? after[k] === before[k] || after[k] === changed.url
                : before[k] === changed.url
                  ? after[k] !== changed.url
                  : after[k] === before[k]
              if (!ok) wrong.push(`key ${k}: ${before[k]} -> ${after[k]} (${changed.url} joined: ${joined})`)
            }
            expect(wrong).toEqual([])
            before = after
          }
        },
      ),
      { numRuns: 60 },
    )
  })

  it('a slow-start step only moves keys onto the ramping instance', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 30 }), fc.nat(), (n, pick) => {
        const v = version(n)
        const ramping = v.instances[pick % n]!
        ramping.usableSince = NOW
        let t = build([v])
        let before = picks(t, t.routes[0]!)
        for (let ms = 500; ms <= SLOW_START_MS; ms += 500) {
          ramping.usableSince = NOW - ms
          t = build([v], t)
          const after = picks(t, t.routes[0]!)
          const wrong = before.flatMap((b, k) => (after[k] !== b && after[k] !== ramping.url ? [`${b} -> ${after[k]}`] : []))
          expect(wrong).toEqual([])
          before = after
        }
      }),
      { numRuns: 20 },
    )
  })

  it('keys follow the slow-start shares within a version', () => {
    const v = version(4)
    // Three warm, one half way through its ramp: shares 2:2:2:1.
    v.instances[3]!.usableSince = NOW - SLOW_START_MS / 2
    const t = build([v])
    const keys = Array.from({ length: 40_000 }, (_, i) => hashString(`share-${i}`))
    const on = picks(t, t.routes[0]!, keys)
    for (const [i, inst] of v.instances.entries()) {
      const share = on.filter((u) => u === inst.url).length / keys.length
      expect(Math.abs(share - (i === 3 ? 1 / 7 : 2 / 7))).toBeLessThan(0.015)
    }
  })

  it('keys split by weight across versions and evenly over each version instances', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 99 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        (w, nBlue, nGreen) => {
          const versions = [version(nBlue, 'blue', 0), version(nGreen, 'green', 1)]
          const t = build(versions, undefined, { blue: 100 - w, green: w })
          const keys = Array.from({ length: 20_000 }, (_, i) => hashString(`split-${w}-${i}`))
          const counts = new Map<string, number>()
          let green = 0
          for (const k of keys) {
            const route = t.chooseVersion({}, k)!
            if (route.version.name === 'green') green++
            const u = t.chooseInstance(route, k)!.url
            counts.set(u, (counts.get(u) ?? 0) + 1)
          }
          expect(Math.abs(green / keys.length - w / 100)).toBeLessThan(0.015)
          // Each instance near its version's share split evenly: binomial noise of the keys, 5 sigma.
          for (const [v, share] of [
            [versions[0]!, (100 - w) / 100],
            [versions[1]!, w / 100],
          ] as const) {
            const expected = (keys.length * share) / v.instances.length
            for (const inst of v.instances) {
              expect(Math.abs((counts.get(inst.url) ?? 0) - expected)).toBeLessThan(5 * Math.sqrt(expected) + 2)
            }
          }
        },
      ),
      { numRuns: 25 },
    )
  })

  it('a replaced table still answers for its own usable set', () => {
    const v = version(6)
    const old = build([v])
    const route = old.routes[0]!
    const before = picks(old, route)
    v.instances[2]!.draining = true
    const next = build([v], old)
    expect(picks(old, route)).toEqual(before)
    expect(picks(next, next.routes[0]!).filter((u) => u === v.instances[2]!.url)).toEqual([])
  })

  it('a retry goes to the key next choice, never the failed instance', () => {
    const v = version(5)
    const t = build([v])
    const route = t.routes[0]!
    for (const k of KEYS.slice(0, 500)) {
      const first = t.chooseInstance(route, k)!
      const retry = t.chooseInstance(route, k, first)!
      expect(retry).not.toBe(first)
      // the same instance the key moves to if the first one leaves
      const without = route.usable.filter((i) => i !== first)
      const weights = route.invWeights.filter((_, i) => route.usable[i] !== first)
      expect(stickyScan(k, without, weights, undefined)).toBe(retry)
    }
  })
})

describe('keyless least request by power of two choices', () => {
  /**
   * Closed-loop steady load: `concurrency` requests always in flight, each
   * finishing after a random number of steps; every finished one is
   * replaced by a new pick. Answers the picks per instance and the mean
   * over time of (most in flight on one instance - mean in flight).
   */
  function steady(pick: (route: VersionRoute) => Instance, route: VersionRoute, concurrency: number, steps: number) {
    let seed = 7
    const rand = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed / 4294967296
    }
    const usable = route.usable
    for (const i of usable) i.inflight = 0
    const live: { inst: Instance; left: number }[] = []
    const counts = new Map<Instance, number>()
    let excess = 0
    for (let s = 0; s < steps; s++) {
      while (live.length < concurrency) {
        const inst = pick(route)
        inst.inflight++
        counts.set(inst, (counts.get(inst) ?? 0) + 1)
        live.push({ inst, left: 1 + Math.floor(rand() * 20) })
      }
      let max = 0
      for (const i of usable) if (i.inflight > max) max = i.inflight
      excess += max - concurrency / usable.length
      for (let j = live.length - 1; j >= 0; j--) {
        if (--live[j]!.left > 0) continue
        live[j]!.inst.inflight--
        live[j] = live[live.length - 1]!
        live.pop()
      }
    }
    const perInstance = usable.map((i) => counts.get(i) ?? 0)
    return { perInstance, excess: excess / steps }
  }

  /** The full scan the table used before: fewest in flight, ties rotating. */
  function scanPicker() {
    let cursor = 0
    return (route: VersionRoute): Instance => {
      const usable = route.usable
      const start = cursor++ % usable.length
      let best = usable[start]!
      for (let j = 1; j < usable.length; j++) {
        const inst = usable[(start + j) % usable.length]!
        if (inst.inflight < best.inflight) best = inst
      }
      return best
    }
  }

  for (const [n, concurrency] of [
    [2, 8],
    [10, 50],
    [50, 200],
    [200, 400],
  ] as const) {
    it(`spreads steady load over ${n} instances about as evenly as the full scan did`, () => {
      const v = version(n)
      const t = build([v])
      const route = t.routes[0]!
      const p2c = steady((r) => t.chooseInstance(r, NO_KEY)!, route, concurrency, 20_000)
      const scan = steady(scanPicker(), route, concurrency, 20_000)
      const spread = (xs: number[]) => {
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length
        return Math.max(...xs.map((x) => Math.abs(x - mean) / mean))
      }
      // Requests per instance: within 5% of the mean, as with the scan (measured: 0.8-2.5% against
      // 0.7-2.9%). In flight at a moment: the scan keeps every instance at the mean; with two choices
      // the busiest runs about 2 above it (1.4 at 10 instances, 2.1 at 200; the known bound grows
      // as log log n).
      expect(spread(p2c.perInstance)).toBeLessThan(0.05)
      expect(spread(scan.perInstance)).toBeLessThan(0.05)
      expect(p2c.excess).toBeLessThan(scan.excess + 3)
    })
  }

  it('a ramping instance gets a share of the load in proportion to its slow-start factor', () => {
    const v = version(4)
    v.instances[0]!.usableSince = NOW - SLOW_START_MS / 4
    const t = build([v])
    const route = t.routes[0]!
    const { perInstance } = steady((r) => t.chooseInstance(r, NO_KEY)!, route, 40, 20_000)
    // Least request weighs in-flight counts by the factor: a quarter of a warm instance's share.
    const warm = (perInstance[1]! + perInstance[2]! + perInstance[3]!) / 3
    expect(perInstance[0]! / warm).toBeGreaterThan(0.1)
    expect(perInstance[0]! / warm).toBeLessThan(0.4)
  })
})
