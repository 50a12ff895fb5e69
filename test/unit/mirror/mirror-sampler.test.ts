import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MirrorSampler } from '../../../src/mirror/mirror-sampler.js'
import { hashString } from '../../../src/routing/hash.js'
import { NO_KEY } from '../../../src/routing/table.js'

describe('mirror sampler', () => {
  it('keyless requests: exactly percent of every hundred, evenly spread', () => {
    for (const percent of [0, 1, 10, 33, 50, 99, 100]) {
      const s = new MirrorSampler(percent)
      const taken = Array.from({ length: 1000 }, () => s.take(NO_KEY))
      expect(taken.filter(Boolean).length).toBe(percent * 10)
      // Evenly: every window of 100 consecutive requests holds exactly `percent`.
      for (let i = 0; i + 100 <= 1000; i += 37) expect(taken.slice(i, i + 100).filter(Boolean).length).toBe(percent)
    }
  })

  it("a sticky key always gets the same answer, so a user's requests are mirrored together", () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 0, max: 100 }), (user, percent) => {
        const key = hashString(user)
        const a = new MirrorSampler(percent)
        const b = new MirrorSampler(percent)
        const first = a.take(key)
        for (let i = 0; i < 5; i++) expect(a.take(key)).toBe(first)
        expect(b.take(key)).toBe(first)
      }),
    )
  })

  it('sticky keys are mirrored in proportion to percent, and raising it only adds keys', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => hashString(`user-${i}`))
    const chosen = (percent: number) => new Set(keys.filter((k) => new MirrorSampler(percent).take(k)))
    const ten = chosen(10)
    const twenty = chosen(20)
    expect(ten.size / keys.length).toBeGreaterThan(0.09)
    expect(ten.size / keys.length).toBeLessThan(0.11)
    for (const k of ten) expect(twenty.has(k)).toBe(true)
    expect(chosen(0).size).toBe(0)
    expect(chosen(100).size).toBe(keys.length)
  })
})
