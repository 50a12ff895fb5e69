import { describe, expect, it } from 'vitest'
import { MirrorStats } from '../../../src/mirror/mirror-stats.js'

function clock(start: number) {
  const c = { t: start, now: () => c.t }
  return c
}

describe('mirror figures', () => {
  it('totals count every outcome; p95 is null until something was measured', () => {
    const c = clock(10_000)
    const s = new MirrorStats({ now: c.now })
    expect(s.totals()).toMatchObject({ since: 10_000, copied: 0, shadowP95Ms: null, primaryP95Ms: null })
    s.copied += 4
    s.dropped++
    s.settle('match', 10, 5)
    s.settle('mismatch', 20, 5)
    s.settle('error', undefined, 5)
    s.settle('uncompared', 30, undefined)
    const t = s.totals()
    expect(t).toMatchObject({ copied: 4, dropped: 1, matched: 1, mismatches: 1, errors: 1, uncompared: 1 })
    expect(t.shadowP95Ms).toBeCloseTo(30, 0)
    expect(t.primaryP95Ms).toBeCloseTo(5, 0)
  })

  it('the mirror phase figures: judged copies, shadow errors counted as mismatches', () => {
    const c = clock(0)
    const s = new MirrorStats({ now: c.now })
    for (let i = 0; i < 90; i++) s.settle('match', 10, 8)
    for (let i = 0; i < 6; i++) s.settle('mismatch', 10, 8)
    for (let i = 0; i < 4; i++) s.settle('error', undefined, 8)
    s.settle('uncompared', 10, undefined)
    const f = s.figuresSince(0)
    expect(f).toMatchObject({ copied: 100, mismatches: 10 })
    expect(f.shadowP95Ms).toBeCloseTo(10, 0)
    expect(f.primaryP95Ms).toBeCloseTo(8, 0)
  })

  it('figures since a later moment count only the slices from then on', () => {
    const c = clock(100_000)
    const s = new MirrorStats({ now: c.now, sliceMs: 1000 })
    for (let i = 0; i < 10; i++) s.settle('mismatch', 500, 1)
    c.t = 105_000
    for (let i = 0; i < 20; i++) s.settle('match', 5, 1)
    c.t = 106_500
    for (let i = 0; i < 30; i++) s.settle('match', 6, 1)
    expect(s.figuresSince(0)).toMatchObject({ copied: 60, mismatches: 10 })
    const later = s.figuresSince(105_000)
    expect(later).toMatchObject({ copied: 50, mismatches: 0 })
    expect(later.shadowP95Ms).toBeCloseTo(6, 0)
    // The slice holding the moment counts whole.
    expect(s.figuresSince(105_400)).toMatchObject({ copied: 50 })
    expect(s.figuresSince(106_000)).toMatchObject({ copied: 30 })
    expect(s.figuresSince(200_000)).toMatchObject({ copied: 0, shadowP95Ms: null })
  })

  it('keeps a bounded history; the run totals stay exact', () => {
    const c = clock(0)
    const s = new MirrorStats({ now: c.now, sliceMs: 1000, maxSlices: 5 })
    for (let sec = 0; sec < 20; sec++) {
      c.t = sec * 1000
      s.settle('match', 1, 1)
    }
    expect(s.figuresSince(0)).toMatchObject({ copied: 20 })
    expect(s.figuresSince(1)).toMatchObject({ copied: 6 })
  })
})
