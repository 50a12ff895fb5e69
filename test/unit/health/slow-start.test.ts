import { describe, expect, it } from 'vitest'
import { Instance, Version } from '../../../src/routing/instance.js'
import { NO_KEY, RoutingTable } from '../../../src/routing/table.js'

const SLOW_START_MS = 10_000

function version(name: string, index: number, urls: string[]): Version {
  const v = new Version(name, index)
  for (const url of urls) v.instances.push(new Instance(url, v, true))
  return v
}

function table(versions: Version[], weights: Record<string, number>, now: number): RoutingTable {
  return new RoutingTable({
    versions,
    weights,
    sticky: [],
    overrides: [],
    slowStartMs: SLOW_START_MS,
    now,
    revision: 1,
  })
}

/** Share of keyless requests per version over one full round-robin cycle. */
function keylessShares(t: RoutingTable, n = 1000): Record<string, number> {
  const counts: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const name = t.chooseVersion({}, NO_KEY)!.version.name
    counts[name] = (counts[name] ?? 0) + 1
  }
  return Object.fromEntries(Object.entries(counts).map(([k, c]) => [k, c / n]))
}

describe('slow start', () => {
  it('an instance usable since before the ramp has factor 1; a new one starts small and grows linearly to 1', () => {
    const v = version('blue', 0, ['http://a:1', 'http://b:1'])
    const [a, b] = v.instances as [Instance, Instance]
    a.usableSince = 0
    b.usableSince = 100_000
    const at = (ms: number) => Array.from(table([v], { blue: 100 }, 100_000 + ms).routes[0]!.factors)
    expect(at(0)).toEqual([1, 0.05])
    expect(at(2_500)).toEqual([1, 0.25])
    expect(at(5_000)).toEqual([1, 0.5])
    expect(at(SLOW_START_MS)).toEqual([1, 1])
    expect(at(60_000)).toEqual([1, 1])
  })

  it('slowStartMs 0 turns it off', () => {
    const v = version('blue', 0, ['http://a:1'])
    v.instances[0]!.usableSince = 5
    const t = new RoutingTable({
      versions: [v],
      weights: { blue: 100 },
      sticky: [],
      overrides: [],
      now: 5,
      revision: 1,
    })
    expect(Array.from(t.routes[0]!.factors)).toEqual([1])
    expect(t.ramping).toBe(false)
  })

  it('the table says it is ramping until every factor reached 1', () => {
    const v = version('blue', 0, ['http://a:1'])
    v.instances[0]!.usableSince = 1_000
    expect(table([v], { blue: 100 }, 1_000 + SLOW_START_MS / 2).ramping).toBe(true)
    expect(table([v], { blue: 100 }, 1_000 + SLOW_START_MS).ramping).toBe(false)
  })

  it('keyless requests favour the warm instance while the new one ramps', () => {
    const v = version('blue', 0, ['http://warm:1', 'http://cold:1'])
    const [warm, cold] = v.instances as [Instance, Instance]
    cold.usableSince = 1_000
    const t = table([v], { blue: 100 }, 1_000 + SLOW_START_MS / 10)
    const route = t.routes[0]!
    // Simulate steady concurrency: each pick stays in flight for a while.
    const picks = { warm: 0, cold: 0 }
    const live: Instance[] = []
    for (let i = 0; i < 2_000; i++) {
      const inst = t.chooseInstance(route, NO_KEY)!
      inst.inflight++
      live.push(inst)
      picks[inst === warm ? 'warm' : 'cold']++
      if (live.length > 20) live.shift()!.inflight--
    }
    expect(picks.cold / 2_000).toBeLessThan(0.2)
    expect(picks.cold).toBeGreaterThan(0)
  })

  it('a recovering single-instance canary ramps its version share instead of taking its whole weight at once', () => {
    const blue = version('blue', 0, ['http://blue:1'])
    const green = version('green', 1, ['http://green:1'])
    green.instances[0]!.usableSince = 50_000
    const early = keylessShares(table([blue, green], { blue: 50, green: 50 }, 50_000))
    const mid = keylessShares(table([blue, green], { blue: 50, green: 50 }, 50_000 + SLOW_START_MS / 2))
    const done = keylessShares(table([blue, green], { blue: 50, green: 50 }, 50_000 + SLOW_START_MS))
    expect(early.green).toBeLessThan(0.1)
    expect(mid.green).toBeGreaterThan(early.green!)
    expect(mid.green).toBeLessThan(0.5)
    expect(done.green).toBeCloseTo(0.5, 2)
  })

  it('sticky keys only move onto a ramping version, never away from it, as its share grows', () => {
    const blue = version('blue', 0, ['http://blue:1'])
    const green = version('green', 1, ['http://green:1'])
    green.instances[0]!.usableSince = 1
    let onGreen = new Set<number>()
    for (let step = 0; step <= 10; step++) {
      const t = table([blue, green], { blue: 50, green: 50 }, 1 + (SLOW_START_MS * step) / 10)
      const now = new Set<number>()
      for (let k = 0; k < 2_000; k++) if (t.chooseVersion({}, k)!.version.name === 'green') now.add(k)
      for (const k of onGreen) expect(now.has(k)).toBe(true)
      onGreen = now
    }
    expect(onGreen.size / 2_000).toBeGreaterThan(0.4)
  })

  it('an instance ramping inside a version that still has a warm instance leaves the version share alone', () => {
    const blue = version('blue', 0, ['http://blue:1'])
    const green = version('green', 1, ['http://g1:1', 'http://g2:1'])
    green.instances[1]!.usableSince = 1_000
    const shares = keylessShares(table([blue, green], { blue: 50, green: 50 }, 1_000))
    expect(shares.green).toBeCloseTo(0.5, 2)
  })
})
