import fc from 'fast-check'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ejectionCap, OutlierDetector } from '../../../src/health/outlier.js'
import { Instance, Version } from '../../../src/routing/instance.js'

const log = pino({ level: 'silent' })

function versionWith(name: string, index: number, count: number): Version {
  const v = new Version(name, index)
  for (let n = 0; n < count; n++) v.instances.push(new Instance(`http://${name}${n + 1}:1`, v, true))
  return v
}

/** blue with `blueCount` instances, green with one (a canary). */
function setup(consecutiveFailures = 3, ejectionMs = 1_000, maxEjectionPercent = 50, blueCount = 2) {
  const blue = versionWith('b', 0, blueCount)
  const green = versionWith('g', 1, 1)
  const changes: string[] = []
  const ejections: string[] = []
  const detector = new OutlierDetector({ consecutiveFailures, ejectionMs, maxEjectionPercent }, log, {
    onChange: (i) => changes.push(`${i.url} ${i.ejected ? 'ejected' : 'back'}`),
    onEjected: (i) => ejections.push(i.version.name),
  })
  const [b1, b2] = blue.instances as [Instance, Instance]
  const g1 = green.instances[0]!
  return { detector, blue, green, b1, b2, g1, changes, ejections }
}

function fail(detector: OutlierDetector, instance: Instance, times: number): void {
  for (let n = 0; n < times; n++) detector.observe(instance, true)
}

describe('outlier ejection', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('ejects after consecutiveFailures failures in a row for ejectionMs, then takes the instance back', () => {
    const { detector, b1, changes, ejections } = setup(3, 1_000)
    detector.observe(b1, true)
    detector.observe(b1, true)
    expect(b1.usable).toBe(true)
    detector.observe(b1, true)
    expect(b1.ejected).toBe(true)
    expect(b1.ejectedUntil).toBe(1_001_000)
    expect(b1.usable).toBe(false)
    expect(changes).toEqual(['http://b1:1 ejected'])
    expect(ejections).toEqual(['b'])
    vi.advanceTimersByTime(999)
    expect(b1.ejected).toBe(true)
    vi.advanceTimersByTime(1)
    expect(b1.ejected).toBe(false)
    expect(b1.ejectedUntil).toBe(0)
    expect(b1.usable).toBe(true)
    expect(b1.consecutiveFailures).toBe(0)
    expect(changes).toEqual(['http://b1:1 ejected', 'http://b1:1 back'])
    detector.stop()
  })

  it('a returning instance starts slow start from the moment it is back', () => {
    const { detector, b1 } = setup(1, 500)
    detector.observe(b1, true)
    vi.advanceTimersByTime(500)
    expect(b1.usableSince).toBe(1_000_500)
    detector.stop()
  })

  it('a success in between resets the count', () => {
    const { detector, b1 } = setup(3)
    for (let i = 0; i < 10; i++) {
      detector.observe(b1, true)
      detector.observe(b1, true)
      detector.observe(b1, false)
    }
    expect(b1.ejected).toBe(false)
    detector.stop()
  })

  it('failures on other instances do not count', () => {
    const { detector, b1, b2 } = setup(3)
    detector.observe(b1, true)
    detector.observe(b2, true)
    detector.observe(b1, true)
    detector.observe(b2, true)
    expect(b1.ejected || b2.ejected).toBe(false)
    detector.stop()
  })

  it('consecutiveFailures 0 turns ejection off', () => {
    const { detector, b1 } = setup(0)
    fail(detector, b1, 100)
    expect(b1.ejected).toBe(false)
    detector.stop()
  })

  it("never ejects a version's last usable instance, whatever the other versions have", () => {
    const { detector, b1, b2, g1, ejections } = setup(2)
    fail(detector, b1, 2)
    fail(detector, b2, 20)
    expect([b1.ejected, b2.ejected]).toEqual([true, false])
    // Green's one instance is its version's last: failing it never moves green's users to blue.
    fail(detector, g1, 20)
    expect(g1.ejected).toBe(false)
    expect(g1.usable).toBe(true)
    expect(ejections).toEqual(['b'])
    detector.stop()
  })

  it('ejects inside a version even when every other version is down', () => {
    const { detector, b1, g1 } = setup(1)
    g1.healthy = false
    detector.observe(b1, true)
    expect(b1.ejected).toBe(true)
    detector.stop()
  })

  it('an instance out of use for another reason does not count as the one left', () => {
    const { detector, b1, b2 } = setup(1)
    b2.healthy = false
    detector.observe(b1, true)
    expect(b1.ejected).toBe(false)
    b2.healthy = true
    b2.draining = true
    detector.observe(b1, true)
    expect(b1.ejected).toBe(false)
    detector.stop()
  })

  it('never ejects more than maxEjectionPercent of a version at once (4 instances failing)', () => {
    for (const [percent, most] of [
      [50, 2],
      [25, 1],
      [10, 1],
      [75, 3],
      [100, 3],
    ] as const) {
      const { detector, blue } = setup(1, 1_000, percent, 4)
      for (const i of blue.instances) fail(detector, i, 5)
      expect(blue.instances.filter((i) => i.ejected).length, `${percent}%`).toBe(most)
      detector.stop()
    }
  })

  it('an ejection slot freed by a return is taken by the next instance still failing', () => {
    const { detector, b1, b2, changes } = setup(1, 1_000, 50, 2)
    detector.observe(b1, true)
    detector.observe(b2, true)
    expect([b1.ejected, b2.ejected]).toEqual([true, false])
    vi.advanceTimersByTime(1_000)
    detector.observe(b2, true)
    expect([b1.ejected, b2.ejected]).toEqual([false, true])
    expect(changes).toEqual(['http://b1:1 ejected', 'http://b1:1 back', 'http://b2:1 ejected'])
    detector.stop()
  })

  it('an instance ejected while failing keeps one ejection, not one per failure', () => {
    const { detector, b1, changes, ejections } = setup(2, 1_000)
    fail(detector, b1, 10)
    expect(changes).toEqual(['http://b1:1 ejected'])
    expect(ejections).toEqual(['b'])
    vi.advanceTimersByTime(1_000)
    expect(changes).toEqual(['http://b1:1 ejected', 'http://b1:1 back'])
    detector.stop()
  })

  it("readmits a version's ejected instances at once when probes or drains leave it nothing else usable", () => {
    const { detector, b1, b2, g1, changes } = setup(1, 10_000)
    detector.observe(b1, true)
    expect(b1.ejected).toBe(true)
    g1.healthy = false
    expect(detector.failOpen()).toBe(false)
    expect(b1.ejected).toBe(true)
    b2.healthy = false
    expect(detector.failOpen()).toBe(true)
    expect(b1.ejected).toBe(false)
    expect(b1.usable).toBe(true)
    // Readmitted once: the pending return does nothing more.
    vi.advanceTimersByTime(10_000)
    expect(changes).toEqual(['http://b1:1 ejected'])
    detector.stop()
  })

  it('does not readmit an ejected instance that is itself unhealthy or draining, nor into a drained version', () => {
    const { detector, blue, b1, b2 } = setup(1, 10_000)
    detector.observe(b1, true)
    b1.healthy = false
    b2.healthy = false
    expect(detector.failOpen()).toBe(false)
    expect(b1.ejected).toBe(true)
    b1.healthy = true
    blue.draining = true
    expect(detector.failOpen()).toBe(false)
    expect(b1.ejected).toBe(true)
    detector.stop()
  })

  it('stop() cancels the pending returns', () => {
    const { detector, b1, changes } = setup(1, 1_000)
    detector.observe(b1, true)
    detector.stop()
    vi.advanceTimersByTime(5_000)
    expect(changes).toEqual(['http://b1:1 ejected'])
  })

  it('ejectionCap: the percent rounded down, at least one from two instances, none for a lone one', () => {
    expect([1, 2, 3, 4, 5, 10].map((n) => ejectionCap(n, 50))).toEqual([0, 1, 1, 2, 2, 5])
    expect([1, 2, 3, 4].map((n) => ejectionCap(n, 100))).toEqual([0, 2, 3, 4])
    expect(ejectionCap(20, 10)).toBe(2)
  })

  it('property: whatever fails, flips health or drains, no version loses its share through ejection', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('fail' as const), at: fc.nat(), times: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ kind: fc.constant('ok' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('health' as const), at: fc.nat(), on: fc.boolean() }),
      fc.record({ kind: fc.constant('drain' as const), at: fc.nat(), on: fc.boolean() }),
      fc.record({ kind: fc.constant('time' as const), ms: fc.integer({ min: 1, max: 1_500 }) }),
    )
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(op, { maxLength: 60 }),
        (counts, percent, limit, ops) => {
          const versions = counts.map((n, k) => versionWith(`v${k}`, k, n))
          const all = versions.flatMap((v) => v.instances)
          const opts = { consecutiveFailures: limit, ejectionMs: 1_000, maxEjectionPercent: percent }
          const detector = new OutlierDetector(opts, log, { onChange: () => detector.failOpen() })
          try {
            for (const o of ops) {
              if (o.kind === 'time') vi.advanceTimersByTime(o.ms)
              else {
                const i = all[o.at % all.length]!
                if (o.kind === 'fail') fail(detector, i, o.times)
                else if (o.kind === 'ok') detector.observe(i, false)
                else if (o.kind === 'health') i.healthy = o.on
                else i.draining = o.on
              }
              // The owner calls failOpen before every rebuild (probes, drains, ejections).
              detector.failOpen()
              for (const v of versions) {
                const ejected = v.instances.filter((i) => i.ejected).length
                expect(ejected).toBeLessThanOrEqual(ejectionCap(v.instances.length, percent))
                const servable = v.instances.some((i) => i.healthy && !i.draining)
                expect(v.instances.some((i) => i.usable)).toBe(servable)
              }
            }
          } finally {
            detector.stop()
          }
        },
      ),
      { numRuns: 200 },
    )
  })
})
