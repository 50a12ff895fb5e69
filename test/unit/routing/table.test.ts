import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { OverrideSpec } from '../../../src/config/load.js'
import { hashString } from '../../../src/routing/hash.js'
import { Instance, Version } from '../../../src/routing/instance.js'
import { NO_KEY, RoutingTable, smoothWeightedSequence } from '../../../src/routing/table.js'

/** Versions named as given, each with `n` usable instances on distinct loopback ports. */
function makeVersions(spec: Record<string, number>): Version[] {
  let port = 20000
  return Object.entries(spec).map(([name, n], index) => {
    const v = new Version(name, index)
    for (let i = 0; i < n; i++) v.instances.push(new Instance(`http://127.0.0.1:${port++}`, v, true))
    return v
  })
}

function table(
  versions: Version[],
  weights: Record<string, number>,
  extra: { overrides?: OverrideSpec[] } = {},
): RoutingTable {
  return new RoutingTable({
    versions,
    weights,
    sticky: [{ kind: 'header', name: 'x-user-id' }],
    overrides: extra.overrides ?? [],
    revision: 1,
  })
}

const KEYS = Array.from({ length: 10_000 }, (_, i) => hashString(`user-${i}`))

/** The version name each key lands on. */
function versionsOf(t: RoutingTable, keys: readonly number[] = KEYS): string[] {
  return keys.map((k) => t.chooseVersion({}, k)!.version.name)
}

function instancesOf(t: RoutingTable, route: NonNullable<ReturnType<RoutingTable['chooseVersion']>>): string[] {
  return KEYS.map((k) => t.chooseInstance(route, k)!.url)
}

function shares(names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const n of names) out[n] = (out[n] ?? 0) + 1
  for (const n of Object.keys(out)) out[n] = (out[n]! / names.length) * 100
  return out
}

/** Total variation distance between two weight vectors, each normalised to a distribution. */
function tvd(a: Record<string, number>, b: Record<string, number>): number {
  const sa = Object.values(a).reduce((x, y) => x + y, 0)
  const sb = Object.values(b).reduce((x, y) => x + y, 0)
  let d = 0
  for (const n of new Set([...Object.keys(a), ...Object.keys(b)])) d += Math.abs((a[n] ?? 0) / sa - (b[n] ?? 0) / sb)
  return d / 2
}

function movedFraction(before: readonly string[], after: readonly string[]): number {
  let moved = 0
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) moved++
  return moved / before.length
}

const NAMES = ['blue', 'green', 'red', 'teal'] as const

/** 2..4 versions with integer weights 0..100, at least one positive. */
const weightVectors = fc
  .integer({ min: 2, max: 4 })
  .chain((n) => fc.array(fc.integer({ min: 0, max: 100 }), { minLength: n, maxLength: n }))
  .filter((ws) => ws.some((w) => w > 0))
  .map((ws) => Object.fromEntries(ws.map((w, i) => [NAMES[i]!, w])) as Record<string, number>)

// Property runs hash 10,000 keys per table: keep the run count modest.
const RUNS = { numRuns: 40 }

describe('sticky split by weight', () => {
  it('10,000 keys at 90/10 land within 1.5 points of 90/10', () => {
    const t = table(makeVersions({ blue: 1, green: 1 }), { blue: 90, green: 10 })
    const s = shares(versionsOf(t))
    expect(Math.abs(s.blue! - 90)).toBeLessThan(1.5)
    expect(Math.abs(s.green! - 10)).toBeLessThan(1.5)
  })

  it('10,000 keys over three versions at 50/30/20 land within 1.5 points of each weight', () => {
    const t = table(makeVersions({ blue: 1, green: 1, red: 1 }), { blue: 50, green: 30, red: 20 })
    const s = shares(versionsOf(t))
    expect(Math.abs(s.blue! - 50)).toBeLessThan(1.5)
    expect(Math.abs(s.green! - 30)).toBeLessThan(1.5)
    expect(Math.abs(s.red! - 20)).toBeLessThan(1.5)
  })

  it('a version at weight 0 gets no key', () => {
    const t = table(makeVersions({ blue: 1, green: 1 }), { blue: 100, green: 0 })
    expect(new Set(versionsOf(t))).toEqual(new Set(['blue']))
  })

  it('a key keeps its version and instance across tables rebuilt with the same weights', () => {
    const versions = makeVersions({ blue: 3, green: 2 })
    const a = table(versions, { blue: 70, green: 30 })
    const b = table(versions, { blue: 70, green: 30 })
    expect(versionsOf(b)).toEqual(versionsOf(a))
    for (const k of KEYS.slice(0, 500)) {
      const ra = a.chooseVersion({}, k)!
      const rb = b.chooseVersion({}, k)!
      expect(b.chooseInstance(rb, k)!.url).toBe(a.chooseInstance(ra, k)!.url)
      // and the same table answers the same way every time
      expect(a.chooseInstance(ra, k)!.url).toBe(a.chooseInstance(ra, k)!.url)
    }
  })

  it('the sticky key is read from the first present source in order', () => {
    const versions = makeVersions({ blue: 1 })
    const t = new RoutingTable({
      versions,
      weights: { blue: 100 },
      sticky: [
        { kind: 'header', name: 'x-user-id' },
        { kind: 'cookie', name: 'session' },
      ],
      overrides: [],
      revision: 1,
    })
    expect(t.keyOf({})).toBe(NO_KEY)
    expect(t.keyOf({ 'x-user-id': '' })).toBe(NO_KEY)
    expect(t.keyOf({ cookie: 'a=1; session=s-42' })).toBe(hashString('s-42'))
    expect(t.keyOf({ 'x-user-id': 'u-7', cookie: 'session=s-42' })).toBe(hashString('u-7'))
  })

  it('raising one version weight only moves keys onto it (others keep their weights)', () => {
    fc.assert(
      fc.property(weightVectors, fc.nat(), fc.integer({ min: 1, max: 100 }), (w, pick, raise) => {
        const names = Object.keys(w)
        const j = names[pick % names.length]!
        const versions = makeVersions(Object.fromEntries(names.map((n) => [n, 1])))
        const after = { ...w, [j]: w[j]! + raise }
        const before = versionsOf(table(versions, w), KEYS.slice(0, 3000))
        const next = versionsOf(table(versions, after), KEYS.slice(0, 3000))
        const wrong = before.flatMap((b, i) => (b !== next[i] && next[i] !== j ? [`${b} -> ${next[i]}`] : []))
        expect(wrong).toEqual([])
      }),
      RUNS,
    )
  })

  it('a canary whose weight rises while no other weight rises never loses a key', () => {
    fc.assert(
      fc.property(
        weightVectors,
        fc.nat(),
        fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 4, maxLength: 4 }),
        (w, pick, cuts) => {
          const names = Object.keys(w)
          const canary = names[pick % names.length]!
          // Move points from every other version to the canary (sum stays the same).
          const after = { ...w }
          names.forEach((n, i) => {
            if (n === canary) return
            const d = Math.min(after[n]!, cuts[i]!)
            after[n] = after[n]! - d
            after[canary] = after[canary]! + d
          })
          const versions = makeVersions(Object.fromEntries(names.map((n) => [n, 1])))
          const before = versionsOf(table(versions, w), KEYS.slice(0, 3000))
          const next = versionsOf(table(versions, after), KEYS.slice(0, 3000))
          const lost = before.flatMap((b, i) => (b === canary && next[i] !== canary ? [`${b} -> ${next[i]}`] : []))
          expect(lost).toEqual([])
        },
      ),
      RUNS,
    )
  })

  it('changing one version weight moves as few keys as possible (moved fraction = total variation distance)', () => {
    fc.assert(
      fc.property(weightVectors, fc.nat(), fc.integer({ min: 0, max: 100 }), (w, pick, to) => {
        const names = Object.keys(w)
        const j = names[pick % names.length]!
        const after = { ...w, [j]: to }
        fc.pre(Object.values(after).some((x) => x > 0))
        const versions = makeVersions(Object.fromEntries(names.map((n) => [n, 1])))
        const moved = movedFraction(versionsOf(table(versions, w)), versionsOf(table(versions, after)))
        // Sampling error of 10,000 keys: a few hundredths at most.
        expect(Math.abs(moved - tvd(w, after))).toBeLessThan(0.025)
      }),
      RUNS,
    )
  })

  it('a rollout step (points moved from baseline to canary, two versions) moves exactly the shifted share', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 100 }), (c1, c2) => {
        const versions = makeVersions({ blue: 1, green: 1 })
        const w1 = { blue: 100 - c1, green: c1 }
        const w2 = { blue: 100 - c2, green: c2 }
        const moved = movedFraction(versionsOf(table(versions, w1)), versionsOf(table(versions, w2)))
        expect(Math.abs(moved - Math.abs(c2 - c1) / 100)).toBeLessThan(0.025)
      }),
      RUNS,
    )
  })

  it('any weight change moves at most twice the minimum (the total variation distance)', () => {
    // Exact minimal movement for every change at once is impossible for any
    // stateless split with three or more versions (no coupling of three
    // distributions is pairwise optimal). Weighted rendezvous is exact for a
    // change of one weight; swapping a small share from one version to
    // another approaches the factor 2 bound.
    fc.assert(
      fc.property(weightVectors, weightVectors, (w1, w2) => {
        const names = [...new Set([...Object.keys(w1), ...Object.keys(w2)])]
        const versions = makeVersions(Object.fromEntries(names.map((n) => [n, 1])))
        const moved = movedFraction(versionsOf(table(versions, w1)), versionsOf(table(versions, w2)))
        expect(moved).toBeLessThanOrEqual(2 * tvd(w1, w2) + 0.025)
      }),
      RUNS,
    )
  })
})

describe('sticky instance choice', () => {
  it('10,000 keys spread evenly over three instances', () => {
    const versions = makeVersions({ blue: 3 })
    const t = table(versions, { blue: 100 })
    const s = shares(instancesOf(t, t.chooseVersion({}, KEYS[0]!)!))
    for (const inst of versions[0]!.instances) expect(Math.abs(s[inst.url]! - 100 / 3)).toBeLessThan(1.5)
  })

  it('removing or adding an instance moves only that instance keys', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), fc.nat(), (n, pick) => {
        const versions = makeVersions({ blue: n })
        const all = versions[0]!.instances
        const gone = all[pick % n]!
        const full = table(versions, { blue: 100 })
        const before = instancesOf(full, full.routes[0]!)
        gone.draining = true
        const less = table(versions, { blue: 100 })
        const after = instancesOf(less, less.routes[0]!)
        gone.draining = false
        const wrong: string[] = []
        for (let i = 0; i < before.length; i++) {
          // Removal moves only the removed instance's keys; adding it back
          // (the same pair read the other way) moves keys only onto it.
          if (before[i] === gone.url ? after[i] === gone.url : after[i] !== before[i])
            wrong.push(`key ${i}: ${before[i]} -> ${after[i]}`)
        }
        expect(wrong).toEqual([])
      }),
      { numRuns: 20 },
    )
  })

  it('keyless requests with two instances go to the one with fewer in flight', () => {
    const versions = makeVersions({ blue: 2 })
    const [a, b] = versions[0]!.instances
    a!.inflight = 4
    b!.inflight = 1
    const t = table(versions, { blue: 100 })
    const route = t.chooseVersion({}, NO_KEY)!
    for (let i = 0; i < 50; i++) expect(t.chooseInstance(route, NO_KEY)!.url).toBe(b!.url)
  })

  it('keyless requests take the less loaded of two random instances: never the busiest, the idlest most', () => {
    const versions = makeVersions({ blue: 3 })
    const [a, b, c] = versions[0]!.instances
    a!.inflight = 4
    b!.inflight = 1
    c!.inflight = 2
    const t = table(versions, { blue: 100 })
    const route = t.chooseVersion({}, NO_KEY)!
    const counts = new Map<string, number>()
    for (let i = 0; i < 3000; i++) {
      const u = t.chooseInstance(route, NO_KEY)!.url
      counts.set(u, (counts.get(u) ?? 0) + 1)
    }
    // b wins both pairs it is drawn in (2 of 3), c the pair (a, c).
    expect(counts.get(a!.url)).toBeUndefined()
    expect(Math.abs(counts.get(b!.url)! / 3000 - 2 / 3)).toBeLessThan(0.05)
  })

  it('keyless ties spread over every instance', () => {
    const versions = makeVersions({ blue: 3 })
    const t = table(versions, { blue: 100 })
    const route = t.chooseVersion({}, NO_KEY)!
    const seen = new Map<string, number>()
    for (let i = 0; i < 3000; i++) {
      const u = t.chooseInstance(route, NO_KEY)!.url
      seen.set(u, (seen.get(u) ?? 0) + 1)
    }
    expect(seen.size).toBe(3)
    for (const n of seen.values()) expect(Math.abs(n - 1000)).toBeLessThan(100)
  })

  it('a retry picks another instance of the version when it has one, and stays in the version', () => {
    const versions = makeVersions({ blue: 2, green: 1 })
    const t = table(versions, { blue: 50, green: 50 })
    const blue = t.routes[0]!
    for (const k of KEYS.slice(0, 200)) {
      const first = t.chooseInstance(blue, k)!
      const retry = t.chooseRetry(blue, k, first)!
      expect(retry.url).not.toBe(first.url)
      expect(retry.version.name).toBe('blue')
    }
    // With one instance in the version, the retry stays on it; only a refused connection goes to another version.
    const green = t.routes[1]!
    const only = green.usable[0]!
    expect(t.chooseRetry(green, KEYS[0]!, only)).toBe(only)
    expect(t.chooseRetry(green, KEYS[0]!, only, true)!.version.name).toBe('blue')
  })

  it('a retry follows the live facts of its version, not the table it began with', () => {
    const versions = makeVersions({ blue: 2, green: 1 })
    const t = table(versions, { blue: 90, green: 10 })
    const blue = t.routes[0]!
    const [b1, b2] = blue.usable as [Instance, Instance]
    // Since the table was built, b1 was ejected: a retry after b2 fails goes to b2 again, never to green.
    b1.ejectedUntil = Date.now() + 1_000
    for (const k of [NO_KEY, ...KEYS.slice(0, 50)]) expect(t.chooseRetry(blue, k, b2)).toBe(b2)
    // And back: b1 returned while the request ran on a table built without it.
    const stale = table(versions, { blue: 90, green: 10 })
    expect(stale.routes[0]!.usable).toEqual([b2])
    b1.ejectedUntil = 0
    expect(stale.chooseRetry(stale.routes[0]!, NO_KEY, b2)).toBe(b1)
  })
})

describe('keyless split (smooth weighted round-robin)', () => {
  it('every window of 100 requests is exactly the weights', () => {
    fc.assert(
      fc.property(weightVectors, (w) => {
        const total = Object.values(w).reduce((a, b) => a + b, 0)
        const t = table(makeVersions(Object.fromEntries(Object.keys(w).map((n) => [n, 1]))), w)
        const expected = Object.fromEntries(Object.entries(w).filter(([, x]) => x > 0))
        for (let round = 0; round < 2; round++) {
          const counts: Record<string, number> = {}
          for (let i = 0; i < total; i++) {
            const n = t.chooseVersion({}, NO_KEY)!.version.name
            counts[n] = (counts[n] ?? 0) + 1
          }
          expect(counts).toEqual(expected)
        }
      }),
      { numRuns: 100 },
    )
  })

  it('90/10 is interleaved, not bunched: one green in every run of 10', () => {
    const t = table(makeVersions({ blue: 1, green: 1 }), { blue: 90, green: 10 })
    const seq = Array.from({ length: 100 }, () => t.chooseVersion({}, NO_KEY)!.version.name)
    for (let i = 0; i < 100; i += 10) expect(seq.slice(i, i + 10).filter((n) => n === 'green')).toHaveLength(1)
  })

  it('smoothWeightedSequence gives nginx order for 5/1/1', () => {
    expect(Array.from(smoothWeightedSequence([5, 1, 1]))).toEqual([0, 0, 1, 0, 2, 0, 0])
  })
})

describe('a version with weight but nothing usable passes its share on', () => {
  it('keyless: the others take it in proportion to their weights', () => {
    const versions = makeVersions({ blue: 1, green: 1, red: 1 })
    versions[2]!.instances[0]!.healthy = false
    const t = table(versions, { blue: 60, green: 20, red: 20 })
    const counts: Record<string, number> = {}
    for (let i = 0; i < 80; i++) {
      const n = t.chooseVersion({}, NO_KEY)!.version.name
      counts[n] = (counts[n] ?? 0) + 1
    }
    expect(counts).toEqual({ blue: 60, green: 20 })
  })

  it('sticky: keys of the usable versions stay, the lost share splits 3:1', () => {
    const versions = makeVersions({ blue: 1, green: 1, red: 1 })
    const weights = { blue: 60, green: 20, red: 20 }
    const before = versionsOf(table(versions, weights))
    versions[2]!.instances[0]!.draining = true
    const after = versionsOf(table(versions, weights))
    expect(before.filter((b, i) => b !== 'red' && after[i] !== b)).toEqual([])
    const s = shares(after)
    expect(Math.abs(s.blue! - 75)).toBeLessThan(1.5)
    expect(Math.abs(s.green! - 25)).toBeLessThan(1.5)
  })

  it('with no weighted version usable, a usable zero-weight version takes the traffic', () => {
    const versions = makeVersions({ blue: 1, green: 1 })
    versions[0]!.instances[0]!.healthy = false
    const t = table(versions, { blue: 100, green: 0 })
    expect(t.serving).toBe(true)
    expect(t.chooseVersion({}, NO_KEY)!.version.name).toBe('green')
    expect(t.chooseVersion({}, KEYS[0]!)!.version.name).toBe('green')
  })

  it('with nothing usable anywhere, there is no route', () => {
    const versions = makeVersions({ blue: 1, green: 1 })
    versions[0]!.instances[0]!.ejectedUntil = Date.now() + 1000
    versions[1]!.draining = true
    const t = table(versions, { blue: 50, green: 50 })
    expect(t.serving).toBe(false)
    expect(t.chooseVersion({}, NO_KEY)).toBeUndefined()
    expect(t.chooseVersion({}, KEYS[0]!)).toBeUndefined()
  })
})

describe('overrides', () => {
  const overrides: OverrideSpec[] = [
    { kind: 'header', name: 'x-canary', value: 'true', version: 'green' },
    { kind: 'cookie', name: 'lane', value: 'red', version: 'red' },
  ]

  it('a matching header or cookie picks its version regardless of weights and key', () => {
    const t = table(makeVersions({ blue: 1, green: 1, red: 1 }), { blue: 100 }, { overrides })
    for (const k of [NO_KEY, ...KEYS.slice(0, 50)]) {
      expect(t.chooseVersion({ 'x-canary': 'true' }, k)!.version.name).toBe('green')
      expect(t.chooseVersion({ cookie: 'a=b; lane=red' }, k)!.version.name).toBe('red')
    }
  })

  it('the first matching override wins', () => {
    const t = table(makeVersions({ blue: 1, green: 1, red: 1 }), { blue: 100 }, { overrides })
    expect(t.chooseVersion({ 'x-canary': 'true', cookie: 'lane=red' }, NO_KEY)!.version.name).toBe('green')
  })

  it('a value that does not match exactly falls to the weights', () => {
    const t = table(makeVersions({ blue: 1, green: 1, red: 1 }), { blue: 100 }, { overrides })
    expect(t.chooseVersion({ 'x-canary': 'TRUE' }, NO_KEY)!.version.name).toBe('blue')
    expect(t.chooseVersion({ cookie: 'lane=redder' }, NO_KEY)!.version.name).toBe('blue')
  })

  it('an override to a version with nothing usable falls through to the weights', () => {
    const versions = makeVersions({ blue: 1, green: 1, red: 1 })
    versions[1]!.instances[0]!.healthy = false
    const t = table(versions, { blue: 100 }, { overrides })
    expect(t.chooseVersion({ 'x-canary': 'true' }, NO_KEY)!.version.name).toBe('blue')
  })
})
