import { describe, expect, it } from 'vitest'
import { Deadlines, sweepEveryMs, type Watched } from '../../../src/proxy/deadlines.js'

/** An item with one deadline that unwatches itself once it acted. */
function item(deadlines: Deadlines, at: number, fired: number[]): Watched {
  const w: Watched = {
    check(now) {
      if (now < at) return
      fired.push(at)
      deadlines.unwatch(w)
    },
  }
  return w
}

describe('Deadlines', () => {
  it('a sweep acts on every passed deadline, leaves the others, and items may unwatch themselves during it', () => {
    const d = new Deadlines(1000)
    const fired: number[] = []
    for (const at of [50, 10, 30, 70]) d.watch(item(d, at, fired))
    d.sweep(40)
    expect(fired.sort((a, b) => a - b)).toEqual([10, 30])
    expect(d.size).toBe(2)
    d.sweep(100)
    expect(fired.sort((a, b) => a - b)).toEqual([10, 30, 50, 70])
    expect(d.size).toBe(0)
    d.stop()
  })

  it('watching twice holds an item once; stop() ends the timer and later watches start none', () => {
    const d = new Deadlines(1000)
    const w = item(d, 10, [])
    d.watch(w)
    d.watch(w)
    expect(d.size).toBe(1)
    d.stop()
    d.watch(item(d, 5, []))
    expect(d.size).toBe(2)
  })

  it('sweeps a tenth of the shortest deadline, between 10 and 250 ms', () => {
    expect(sweepEveryMs(30_000, 60_000)).toBe(250)
    expect(sweepEveryMs(400, 60_000)).toBe(40)
    expect(sweepEveryMs(50, 300)).toBe(10)
  })
})
