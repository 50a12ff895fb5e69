import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { OutlierDetector } from '../../../src/health/outlier.js'
import { Instance, Version } from '../../../src/routing/instance.js'

/**
 * One proxy with workers (README "Workers and self-upgrade"): each process
 * has its own instances and detector; what crosses between them is what
 * the worker channel carries (an ejection report, a refusal, the primary's
 * ejections with the state). Messages here are delivered in order, as the
 * channel does, but only when the test says so.
 */

const log = pino({ level: 'silent' })
const OPTS = { consecutiveFailures: 3, ejectionMs: 1_000, maxEjectionPercent: 50 }

interface Proc {
  blue: Version
  detector: OutlierDetector
  changes: string[]
}

function proc(count: number, events: { ejected?: string[] } = {}): Proc {
  const blue = new Version('blue', 0)
  for (let n = 0; n < count; n++) blue.instances.push(new Instance(`http://b${n + 1}:1`, blue, true))
  const changes: string[] = []
  const detector = new OutlierDetector(OPTS, log, {
    onChange: (i) => changes.push(`${i.url} ${i.ejected ? 'ejected' : 'back'}`),
    onEjected: (i) => events.ejected?.push(i.url),
  })
  return { blue, detector, changes }
}

/** A primary and two workers over one version of `count` instances. */
function proxy(count = 2) {
  const ejected: string[] = []
  const primary = proc(count, { ejected })
  const workers = [proc(count), proc(count)]
  /** Reports from the workers to the primary, in the order sent. */
  const toPrimary: { from: number; url: string; until: number; why: Record<string, unknown> }[] = []
  workers.forEach((w, k) => w.detector.followPrimary((i, until, why) => toPrimary.push({ from: k, url: i.url, until, why })))
  const byUrl = (p: Proc, url: string) => p.blue.instances.find((i) => i.url === url)!
  /** The primary's state to every worker (what `health` carries). */
  const broadcast = () => {
    for (const w of workers)
      for (const i of primary.blue.instances) w.detector.follow(byUrl(w, i.url), i.ejectedUntil)
  }
  /** The primary handles its pending reports; a refusal goes back to that worker; each recorded one is broadcast. */
  const deliver = () => {
    for (const r of toPrimary.splice(0)) {
      const ok = primary.detector.confirm(byUrl(primary, r.url), r.until, r.why)
      if (ok) broadcast()
      else workers[r.from]!.detector.reinstate(byUrl(workers[r.from]!, r.url))
    }
  }
  const fail = (w: Proc, url: string, times: number) => {
    for (let n = 0; n < times; n++) w.detector.observe(byUrl(w, url), true)
  }
  const ejectedIn = (p: Proc) => p.blue.instances.filter((i) => i.ejected).map((i) => i.url)
  const stop = () => [primary, ...workers].forEach((p) => p.detector.stop())
  return { primary, workers, ejected, toPrimary, deliver, broadcast, fail, ejectedIn, stop }
}

describe('outlier ejection with workers: the primary decides for the proxy', () => {
  beforeEach(() => void vi.useFakeTimers({ now: 1_000_000 }))
  afterEach(() => void vi.useRealTimers())

  it("a worker ejects at once on its own traffic; the primary records it once and every worker follows, until the primary's return", () => {
    const p = proxy()
    const [a, b] = p.workers as [Proc, Proc]
    p.fail(a, 'http://b1:1', 3)
    // At once, before any message: the worker that saw the failures avoids the instance.
    expect(p.ejectedIn(a)).toEqual(['http://b1:1'])
    expect(p.ejectedIn(p.primary)).toEqual([])
    expect(p.toPrimary).toEqual([{ from: 0, url: 'http://b1:1', until: 1_001_000, why: { mode: 'consecutive', failures: 3 } }])
    p.deliver()
    expect(p.ejectedIn(p.primary)).toEqual(['http://b1:1'])
    expect(p.primary.blue.instances[0]!.ejectedUntil).toBe(1_001_000)
    expect(p.ejectedIn(b)).toEqual(['http://b1:1'])
    // Counted once, by the primary (workers count none).
    expect(p.ejected).toEqual(['http://b1:1'])
    // Its end is the primary's: the worker's own timer was handed over.
    vi.advanceTimersByTime(1_000)
    expect(p.ejectedIn(p.primary)).toEqual([])
    expect(p.ejectedIn(a)).toEqual(['http://b1:1'])
    p.broadcast()
    expect(p.ejectedIn(a)).toEqual([])
    expect(p.ejectedIn(b)).toEqual([])
    expect(a.blue.instances[0]!.consecutiveFailures).toBe(0)
    expect(a.changes).toEqual(['http://b1:1 ejected'])
    p.stop()
  })

  it('two workers ejecting at once cannot pass the cap: the first stays, the other worker takes its back', () => {
    const p = proxy(2)
    const [a, b] = p.workers as [Proc, Proc]
    p.fail(a, 'http://b1:1', 3)
    p.fail(b, 'http://b2:1', 3)
    // Each alone was within the cap (one of two).
    expect(p.ejectedIn(a)).toEqual(['http://b1:1'])
    expect(p.ejectedIn(b)).toEqual(['http://b2:1'])
    p.deliver()
    expect(p.ejectedIn(p.primary)).toEqual(['http://b1:1'])
    expect(p.ejected).toEqual(['http://b1:1'])
    expect(p.ejectedIn(a)).toEqual(['http://b1:1'])
    expect(p.ejectedIn(b)).toEqual(['http://b1:1'])
    // More failures on b2 in worker b: the proxy's ejection is there now, so b holds the cap itself.
    p.fail(b, 'http://b2:1', 10)
    expect(p.toPrimary).toEqual([])
    expect(p.ejectedIn(b)).toEqual(['http://b1:1'])
    p.stop()
  })

  /** Worker a has just ejected b1 on its own; the primary has not heard of it yet. */
  function ejectedByA() {
    const p = proxy()
    const a = p.workers[0]!
    p.fail(a, 'http://b1:1', 3)
    return { p, a }
  }

  it("a worker's ejection stays through a state sent before the primary heard of it", () => {
    const { p, a } = ejectedByA()
    p.broadcast()
    expect(p.ejectedIn(a)).toEqual(['http://b1:1'])
    p.deliver()
    expect(p.ejectedIn(a)).toEqual(['http://b1:1'])
    p.stop()
  })

  it("a worker's ejection the primary never answers ends at its own deadline", () => {
    const { p, a } = ejectedByA()
    vi.advanceTimersByTime(1_000)
    expect(p.ejectedIn(a)).toEqual([])
    // Reported too late to matter: the primary records nothing.
    p.deliver()
    expect(p.ejectedIn(p.primary)).toEqual([])
    expect(p.ejected).toEqual([])
    p.stop()
  })

  it('a worker started later gets the live ejections with its first state', () => {
    const { p } = ejectedByA()
    p.deliver()
    const fresh = proc(2)
    fresh.detector.followPrimary(() => {})
    for (const i of p.primary.blue.instances)
      fresh.detector.follow(fresh.blue.instances.find((x) => x.url === i.url)!, i.ejectedUntil)
    expect(fresh.blue.instances.map((i) => i.ejected)).toEqual([true, false])
    fresh.detector.stop()
    p.stop()
  })

  it("a worker's detector leaves the peer sweep to the primary", () => {
    const blue = new Version('blue', 0)
    for (let n = 0; n < 3; n++) blue.instances.push(new Instance(`http://b${n + 1}:1`, blue, true))
    const peers = { intervalMs: 100, minRequests: 10, abovePeersPercent: 20 }
    const d = new OutlierDetector({ ...OPTS, consecutiveFailures: 0, peers }, log, { onChange: () => {} }, () => [blue])
    d.followPrimary(() => {})
    for (const i of blue.instances) for (let n = 0; n < 50; n++) d.observe(i, i === blue.instances[0])
    vi.advanceTimersByTime(1_000)
    expect(blue.instances.some((i) => i.ejected)).toBe(false)
    // Its counts are left for the report to the primary.
    expect(blue.instances.map((i) => [i.windowRequests, i.windowFailures])).toEqual([
      [50, 50],
      [50, 0],
      [50, 0],
    ])
    d.stop()
  })
})
