import { describe, expect, it } from 'vitest'
import { Instance, Version } from '../../../src/routing/instance.js'
import { NO_KEY, RoutingTable } from '../../../src/routing/table.js'

function versions(spec: Record<string, number>): Version[] {
  return Object.entries(spec).map(([name, n], index) => {
    const v = new Version(name, index)
    for (let i = 0; i < n; i++) v.instances.push(new Instance(`http://${name}-${i}:1`, v, true))
    return v
  })
}

function table(vs: Version[], weights: Record<string, number>, shadowVersion?: string): RoutingTable {
  return new RoutingTable({ versions: vs, weights, sticky: [], overrides: [], shadowVersion, revision: 1 })
}

function keylessCounts(t: RoutingTable, n = 100): Record<string, number> {
  const counts: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const name = t.chooseVersion({}, NO_KEY)?.version.name ?? '503'
    counts[name] = (counts[name] ?? 0) + 1
  }
  return counts
}

describe('the usable set and share passing (README, Proxying rules)', () => {
  it('each of unhealthy, ejected and draining takes an instance out of use', () => {
    const [blue] = versions({ blue: 4 })
    const [a, b, c, d] = blue!.instances as [Instance, Instance, Instance, Instance]
    a.healthy = false
    b.ejectedUntil = Date.now() + 1_000
    c.draining = true
    expect(table([blue!], { blue: 100 }).routes[0]!.usable).toEqual([d])
    blue!.draining = true
    expect(table([blue!], { blue: 100 }).routes[0]!.usable).toEqual([])
  })

  it('a version with weight but nothing usable passes its share to the others in proportion to their weights', () => {
    const vs = versions({ blue: 1, green: 1, canary: 1 })
    vs[0]!.instances[0]!.healthy = false
    expect(keylessCounts(table(vs, { blue: 50, green: 30, canary: 20 }))).toEqual({ green: 60, canary: 40 })
  })

  it('sticky keys of a version with nothing usable spread over the others in proportion', () => {
    const vs = versions({ blue: 1, green: 1, canary: 1 })
    vs[0]!.instances[0]!.draining = true
    const t = table(vs, { blue: 50, green: 30, canary: 20 })
    const counts: Record<string, number> = {}
    for (let k = 0; k < 20_000; k++) {
      const name = t.chooseVersion({}, k)!.version.name
      counts[name] = (counts[name] ?? 0) + 1
    }
    expect(counts.blue).toBeUndefined()
    expect(counts.green! / 20_000).toBeCloseTo(0.6, 1)
    expect(counts.canary! / 20_000).toBeCloseTo(0.4, 1)
  })

  it('zero-weight versions take traffic only when no weighted version has anything usable', () => {
    const vs = versions({ blue: 1, green: 1 })
    expect(keylessCounts(table(vs, { blue: 100, green: 0 }))).toEqual({ blue: 100 })
    vs[0]!.instances[0]!.healthy = false
    expect(keylessCounts(table(vs, { blue: 100, green: 0 }))).toEqual({ green: 100 })
  })

  it('the mirror version never takes user traffic by failing open', () => {
    const vs = versions({ blue: 1, green: 1 })
    vs[0]!.instances[0]!.healthy = false
    const t = table(vs, { blue: 100, green: 0 }, 'green')
    expect(t.serving).toBe(false)
    expect(t.chooseVersion({}, NO_KEY)).toBeUndefined()
  })

  it('only when no version has a usable instance is there nothing to route to (503)', () => {
    const vs = versions({ blue: 2, green: 1 })
    for (const v of vs) for (const i of v.instances) i.healthy = false
    const t = table(vs, { blue: 50, green: 50 })
    expect(t.serving).toBe(false)
    expect(keylessCounts(t)).toEqual({ 503: 100 })
    vs[1]!.instances[0]!.healthy = true
    expect(keylessCounts(table(vs, { blue: 50, green: 50 }))).toEqual({ green: 100 })
  })

  it('a sticky key moves only when its own instance leaves, and comes back when it returns', () => {
    const [blue] = versions({ blue: 4 })
    const before = new Map<number, Instance>()
    let t = table([blue!], { blue: 100 })
    for (let k = 0; k < 2_000; k++) before.set(k, t.chooseInstance(t.routes[0]!, k)!)
    const leaving = blue!.instances[1]!
    leaving.draining = true
    t = table([blue!], { blue: 100 })
    for (const [k, inst] of before) {
      const now = t.chooseInstance(t.routes[0]!, k)!
      if (inst === leaving) expect(now).not.toBe(leaving)
      else expect(now).toBe(inst)
    }
    leaving.draining = false
    t = table([blue!], { blue: 100 })
    for (const [k, inst] of before) expect(t.chooseInstance(t.routes[0]!, k)).toBe(inst)
  })
})
