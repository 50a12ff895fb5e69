import { describe, expect, it } from 'vitest'
import { figuresFromSlices, mergeSlices } from '../../../src/analysis/slices.js'
import { VersionWindow } from '../../../src/analysis/version-window.js'

function fakeClock(start = 1_000_000) {
  const clock = { t: start, now: () => clock.t }
  return clock
}

describe('version window', () => {
  it('counts requests, errors and p95 of what was recorded', () => {
    const clock = fakeClock()
    const w = new VersionWindow({ windowMs: 10_000, sliceMs: 1000, now: clock.now })
    for (let i = 1; i <= 100; i++) w.record(i > 90, i)
    const f = w.figures()
    expect(f.requests).toBe(100)
    expect(f.errors).toBe(10)
    expect(f.errorRate).toBeCloseTo(0.1)
    expect(f.p95Ms).toBeGreaterThan(95 * 0.97)
    expect(f.p95Ms).toBeLessThan(95 * 1.03)
    expect(f.p50Ms).toBeCloseTo(50, 0)
  })

  it('an empty window reads zeros', () => {
    const w = new VersionWindow({ windowMs: 10_000, sliceMs: 1000, now: () => 0 })
    expect(w.figures()).toEqual({ requests: 0, errors: 0, errorRate: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0 })
  })

  it('old slices fall out after windowMs', () => {
    const clock = fakeClock(1_000_000)
    const w = new VersionWindow({ windowMs: 10_000, sliceMs: 1000, now: clock.now })
    w.record(true, 500) // slow errors at t
    clock.t += 5000
    w.tick()
    w.record(false, 5) // fast successes at t + 5 s
    w.record(false, 5)
    clock.t = 1_000_000 + 9000
    expect(w.figures().requests).toBe(3)
    clock.t = 1_000_000 + 10_000
    const f = w.figures()
    expect(f.requests).toBe(2)
    expect(f.errors).toBe(0)
    expect(f.p95Ms).toBeLessThan(6)
    clock.t = 1_000_000 + 15_000
    expect(w.figures().requests).toBe(0)
  })

  it('a long silence empties the window at once', () => {
    const clock = fakeClock()
    const w = new VersionWindow({ windowMs: 5000, sliceMs: 1000, now: clock.now })
    for (let s = 0; s < 5; s++) {
      w.record(true, 10)
      clock.t += 1000
      w.tick()
    }
    clock.t += 3_600_000
    expect(w.figures()).toMatchObject({ requests: 0, errors: 0, p95Ms: 0 })
    w.record(false, 1)
    expect(w.figures().requests).toBe(1)
  })

  it('record writes into the slice of the last tick without reading the clock', () => {
    let reads = 0
    const w = new VersionWindow({
      windowMs: 10_000,
      sliceMs: 1000,
      now: () => {
        reads++
        return 0
      },
    })
    reads = 0
    for (let i = 0; i < 1000; i++) w.record(false, 1)
    expect(reads).toBe(0)
  })

  it('exports its slices as plain data aligned on the slice length', () => {
    const clock = fakeClock(1_000_250)
    const w = new VersionWindow({ windowMs: 10_000, sliceMs: 1000, now: clock.now })
    w.record(false, 1)
    clock.t += 2000
    w.tick()
    w.record(true, 2)
    w.record(false, 3)
    const slices = JSON.parse(JSON.stringify(w.exportSlices()))
    expect(slices.map((s: { startMs: number }) => s.startMs)).toEqual([1_000_000, 1_002_000])
    expect(slices.map((s: { requests: number }) => s.requests)).toEqual([1, 2])
    expect(figuresFromSlices(slices)).toEqual(w.figures())
    expect(w.currentSliceStart).toBe(1_002_000)
  })

  it('the figures of merged slices from several proxies are the figures of all their traffic', () => {
    const clock = fakeClock()
    const opts = { windowMs: 10_000, sliceMs: 1000, now: clock.now }
    const a = new VersionWindow(opts)
    const b = new VersionWindow(opts)
    const all = new VersionWindow(opts)
    for (let s = 0; s < 4; s++) {
      for (let i = 0; i < 20; i++) {
        const [err, ms] = [i % 7 === 0, 1 + ((i * 13 + s) % 50)]
        ;(i % 3 === 0 ? a : b).record(err, ms)
        all.record(err, ms)
      }
      clock.t += 1000
      for (const w of [a, b, all]) w.tick()
    }
    const merged = mergeSlices(a.exportSlices(), b.exportSlices())
    expect(merged).toEqual(all.exportSlices())
    expect(figuresFromSlices(merged)).toEqual(all.figures())
    // only the slices inside a window starting later
    expect(figuresFromSlices(merged, merged[2]!.startMs).requests).toBe(40)
  })

  it('rejects a slice longer than the window', () => {
    expect(() => new VersionWindow({ windowMs: 500, sliceMs: 1000, now: () => 0 })).toThrow(RangeError)
  })
})
