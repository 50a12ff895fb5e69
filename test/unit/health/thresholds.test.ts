import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { nextHealth, type ProbeState, type Thresholds, unprobed } from '../../../src/health/thresholds.js'

/** The health after each probe result, starting from `start`. */
function run(start: ProbeState, results: string, t: Thresholds): string {
  let s = start
  let out = ''
  for (const c of results) {
    s = nextHealth(s, c === '+', t)
    out += s.healthy ? 'H' : 'u'
  }
  return out
}

const healthy: ProbeState = { healthy: true, lastOk: true, streak: 10 }

describe('health thresholds', () => {
  it('a never-probed instance becomes healthy on its first passing probe', () => {
    const t = { healthy: 3, unhealthy: 2 }
    expect(run(unprobed(t), '+', t)).toBe('H')
    expect(run(unprobed(t), '-+', t)).toBe('uu')
    expect(run(unprobed(t), '-+++', t)).toBe('uuuH')
  })

  it('turns unhealthy only after unhealthyThreshold failures in a row', () => {
    const t = { healthy: 2, unhealthy: 3 }
    expect(run(healthy, '--+--+---', t)).toBe('HHHHHHHHu')
  })

  it('turns healthy again only after healthyThreshold successes in a row', () => {
    const t = { healthy: 3, unhealthy: 1 }
    expect(run(healthy, '-++-++-+++', t)).toBe('uuuuuuuuuH')
  })

  it('a flapping instance with thresholds of 1 follows every probe', () => {
    const t = { healthy: 1, unhealthy: 1 }
    expect(run(healthy, '-+-+--++', t)).toBe('uHuHuuHH')
  })

  it('a pending transition is cancelled by one disagreeing result', () => {
    const t = { healthy: 2, unhealthy: 2 }
    expect(run(healthy, '-+-+-+', t)).toBe('HHHHHH')
    expect(run(healthy, '--', t)).toBe('Hu')
  })

  it('property: the state flips exactly when the last `threshold` results all disagree with it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.boolean(), { maxLength: 60 }),
        (h, u, results) => {
          const t = { healthy: h, unhealthy: u }
          let s = healthy
          const history: boolean[] = []
          for (const ok of results) {
            const before = s.healthy
            s = nextHealth(s, ok, t)
            history.push(ok)
            const need = ok ? h : u
            const tail = history.slice(-need)
            const agreeingRun = tail.length === need && tail.every((r) => r === ok)
            expect(s.healthy).toBe(before !== ok && agreeingRun ? ok : before)
          }
        },
      ),
    )
  })
})
