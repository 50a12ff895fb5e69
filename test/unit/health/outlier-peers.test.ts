import fc from 'fast-check'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { OutlierDetector } from '../../../src/health/outlier.js'
import { peerOutliers } from '../../../src/health/peer-outliers.js'
import { Instance, Version } from '../../../src/routing/instance.js'

const log = pino({ level: 'silent' })
const PEERS = { intervalMs: 1_000, minRequests: 50, abovePeersPercent: 20 }

/** A version whose instances saw [requests, failures] each in the interval. */
function version(counts: readonly (readonly [number, number])[], name = 'blue'): Version {
  const v = new Version(name, 0)
  counts.forEach(([requests, failures], n) => {
    const i = new Instance(`http://${name}${n + 1}:1`, v, true)
    i.windowRequests = requests
    i.windowFailures = failures
    v.instances.push(i)
  })
  return v
}

const urls = (v: Version) => peerOutliers(v.instances, PEERS).map((o) => o.instance.url)

describe('peer outliers', () => {
  it('an instance failing 20 points or more above its peers is one; a fault shared alike makes none', () => {
    expect(urls(version([[100, 40], [100, 0], [100, 2]]))).toEqual(['http://blue1:1'])
    expect(urls(version([[100, 30], [100, 30], [100, 30]]))).toEqual([])
    expect(urls(version([[100, 100], [100, 100]]))).toEqual([])
    // 19 points above: not clearly worse.
    expect(urls(version([[100, 29], [100, 10]]))).toEqual([])
    expect(urls(version([[100, 30], [100, 10]]))).toEqual(['http://blue1:1'])
  })

  it('needs minRequests on the instance and on at least one peer', () => {
    expect(urls(version([[49, 49], [100, 0]]))).toEqual([])
    expect(urls(version([[100, 100], [49, 0]]))).toEqual([])
    expect(urls(version([[100, 100]]))).toEqual([])
  })

  it('reports the worst first, and leaves out instances already ejected', () => {
    const v = version([[100, 60], [100, 90], [100, 0], [100, 0]])
    expect(urls(v)).toEqual(['http://blue2:1', 'http://blue1:1'])
    v.instances[1]!.ejectedUntil = 1
    expect(urls(v)).toEqual(['http://blue1:1'])
  })

  it('property: when every instance fails at the same rate, none is an outlier', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 50, max: 1_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (n, requests, rate) => {
          const failures = Math.round(requests * rate)
          expect(urls(version(Array.from({ length: n }, () => [requests, failures] as const)))).toEqual([])
        },
      ),
      { numRuns: 200 },
    )
  })
})

describe('the peer sweep', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  function detectorFor(versions: Version[], maxEjectionPercent = 50) {
    const ejected: string[] = []
    const d = new OutlierDetector(
      { consecutiveFailures: 0, ejectionMs: 5_000, maxEjectionPercent, peers: PEERS },
      log,
      { onChange: () => {}, onEjected: (i) => ejected.push(i.url) },
      () => versions,
    )
    return { d, ejected }
  }

  it('every intervalMs, ejects the outliers within the version limits and starts a fresh interval', () => {
    const blue = version([[100, 90], [100, 80], [100, 0], [100, 0]])
    const green = version([[100, 100]], 'green')
    const { d, ejected } = detectorFor([blue, green])
    vi.advanceTimersByTime(1_000)
    // Two outliers, but 50% of 4 is 2 and both fit; green's lone instance has no peers.
    expect(ejected).toEqual(['http://blue1:1', 'http://blue2:1'])
    expect(blue.instances.every((i) => i.windowRequests === 0 && i.windowFailures === 0)).toBe(true)
    expect(blue.instances[0]!.ejectedUntil).toBe(1_006_000)
    d.stop()
  })

  it('honours maxEjectionPercent: the worst goes first', () => {
    const blue = version([[100, 60], [100, 90], [100, 0], [100, 0]])
    const { d, ejected } = detectorFor([blue], 25)
    d.sweep()
    expect(ejected).toEqual(['http://blue2:1'])
    d.stop()
  })

  it('counts what observe() saw: consecutive failures off, the peer rule still acts', () => {
    const blue = version([[0, 0], [0, 0]])
    const { d, ejected } = detectorFor([blue])
    const [b1, b2] = blue.instances as [Instance, Instance]
    for (let n = 0; n < 100; n++) {
      d.observe(b1, n % 2 === 0)
      d.observe(b2, false)
    }
    expect(ejected).toEqual([])
    vi.advanceTimersByTime(1_000)
    expect(ejected).toEqual(['http://blue1:1'])
    d.stop()
  })
})
