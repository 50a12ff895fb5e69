import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { OutlierDetector } from '../../../src/health/outlier.js'
import { Instance, Version } from '../../../src/routing/instance.js'

const log = pino({ level: 'silent' })

function setup(consecutiveFailures = 3, ejectionMs = 1_000) {
  const blue = new Version('blue', 0)
  const green = new Version('green', 1)
  const b1 = new Instance('http://b1:1', blue, true)
  const b2 = new Instance('http://b2:1', blue, true)
  const g1 = new Instance('http://g1:1', green, true)
  blue.instances.push(b1, b2)
  green.instances.push(g1)
  const changes: string[] = []
  const detector = new OutlierDetector(
    { consecutiveFailures, ejectionMs },
    () => [blue, green],
    log,
    (i) => changes.push(`${i.url} ${i.ejected ? 'ejected' : 'back'}`),
  )
  return { detector, b1, b2, g1, changes }
}

describe('outlier ejection', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('ejects after consecutiveFailures failures in a row for ejectionMs, then takes the instance back', () => {
    const { detector, b1, changes } = setup(3, 1_000)
    detector.observe(b1, true)
    detector.observe(b1, true)
    expect(b1.usable).toBe(true)
    detector.observe(b1, true)
    expect(b1.ejected).toBe(true)
    expect(b1.usable).toBe(false)
    expect(changes).toEqual(['http://b1:1 ejected'])
    vi.advanceTimersByTime(999)
    expect(b1.ejected).toBe(true)
    vi.advanceTimersByTime(1)
    expect(b1.ejected).toBe(false)
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
    for (let i = 0; i < 100; i++) detector.observe(b1, true)
    expect(b1.ejected).toBe(false)
    detector.stop()
  })

  it('never ejects the last usable instance of all versions (fail open)', () => {
    const { detector, b1, b2, g1 } = setup(2)
    for (const i of [b1, b1, b2, b2]) detector.observe(i, true)
    expect([b1.ejected, b2.ejected]).toEqual([true, true])
    detector.observe(g1, true)
    detector.observe(g1, true)
    detector.observe(g1, true)
    expect(g1.ejected).toBe(false)
    expect(g1.usable).toBe(true)
    detector.stop()
  })

  it('an instance already out of use for another reason does not count as the one left', () => {
    const { detector, b1, b2, g1 } = setup(1)
    b2.healthy = false
    g1.draining = true
    detector.observe(b1, true)
    expect(b1.ejected).toBe(false)
    detector.stop()
  })

  it('an instance ejected while failing keeps one ejection, not one per failure', () => {
    const { detector, b1, changes } = setup(2, 1_000)
    for (let i = 0; i < 10; i++) detector.observe(b1, true)
    expect(changes).toEqual(['http://b1:1 ejected'])
    vi.advanceTimersByTime(1_000)
    expect(changes).toEqual(['http://b1:1 ejected', 'http://b1:1 back'])
    detector.stop()
  })

  it('readmits ejected instances at once when probes or drains have since left nothing else usable', () => {
    const { detector, b1, b2, g1, changes } = setup(1, 10_000)
    detector.observe(b1, true)
    expect(b1.ejected).toBe(true)
    b2.healthy = false
    expect(detector.failOpen()).toBe(false)
    g1.draining = true
    expect(detector.failOpen()).toBe(true)
    expect(b1.ejected).toBe(false)
    expect(b1.usable).toBe(true)
    // Readmitted once: the pending return does nothing more.
    vi.advanceTimersByTime(10_000)
    expect(changes).toEqual(['http://b1:1 ejected'])
    detector.stop()
  })

  it('does not readmit an ejected instance that is itself unhealthy or draining', () => {
    const { detector, b1, b2, g1 } = setup(1, 10_000)
    detector.observe(b1, true)
    b1.healthy = false
    b2.healthy = false
    g1.healthy = false
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
})
