import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { normalQuantile } from '../../../src/analysis/normal-quantile.js'
import { type AnalysisLimits, excessZ, type JudgedFigures, judge } from '../../../src/analysis/verdict.js'

const limits: AnalysisLimits = {
  minRequests: 100,
  maxErrorRateIncrease: 0.02,
  maxP95Ratio: 1.5,
  maxP95IncreaseMs: 100,
  confidence: 0.99,
}

const v = (requests: number, errors: number, p95Ms = 20): JudgedFigures => ({ requests, errors, p95Ms })

interface Case {
  name: string
  baseline: JudgedFigures
  canary: JudgedFigures
  usable?: boolean
  limits?: Partial<AnalysisLimits>
  outcome: 'wait' | 'pass' | 'breach'
  figure?: 'usable' | 'error_rate' | 'p95'
  reason?: RegExp
}

const cases: Case[] = [
  {
    name: 'low canary traffic gives no verdict, however bad it looks',
    baseline: v(5000, 0),
    canary: v(50, 25, 900),
    outcome: 'wait',
    reason: /^waiting for 100 requests per version in the window \(50 vs 5000 requests\)$/,
  },
  { name: 'low baseline traffic gives no verdict', baseline: v(20, 0), canary: v(500, 100), outcome: 'wait' },
  { name: 'one unlucky error in a hundred requests passes', baseline: v(1000, 0), canary: v(100, 1), outcome: 'pass' },
  {
    name: 'three errors in a hundred against none is above the limit but not significant',
    baseline: v(100, 0),
    canary: v(100, 3),
    outcome: 'pass',
    reason: /above baseline 0 \+ 0\.02 but not significant \(z=0\.6 <= 2\.33\)/,
  },
  {
    name: 'three errors in seventy against none in 240 are not significantly more than 2 points higher',
    baseline: v(240, 0),
    canary: v(70, 3),
    limits: { minRequests: 50 },
    outcome: 'pass',
  },
  {
    name: 'five errors in a hundred against none breach at a lower confidence only',
    baseline: v(100, 0),
    canary: v(100, 5),
    limits: { confidence: 0.9 },
    outcome: 'breach',
    figure: 'error_rate',
  },
  {
    name: 'five errors in a hundred pass at the default confidence',
    baseline: v(100, 0),
    canary: v(100, 5),
    outcome: 'pass',
  },
  {
    name: 'a canary failing every request breaches on the first minRequests',
    baseline: v(100, 0),
    canary: v(100, 100),
    outcome: 'breach',
    reason: /z=Infinity > 2\.33/,
  },
  {
    name: 'a 20% error rate breaches on thirty requests',
    baseline: v(300, 0),
    canary: v(30, 6),
    limits: { minRequests: 30 },
    outcome: 'breach',
  },
  {
    name: 'a 10% error rate at 200 requests is a breach',
    baseline: v(2000, 2),
    canary: v(200, 20),
    outcome: 'breach',
    figure: 'error_rate',
    reason: /^canary error rate 0\.1 exceeds baseline 0\.001 \+ 0\.02 \(z=\d+\.\d > 2\.33; 200 vs 2000 requests\)$/,
  },
  {
    name: 'a 10% error rate at 200 requests against a quiet baseline is a breach',
    baseline: v(200, 0),
    canary: v(200, 20),
    outcome: 'breach',
    figure: 'error_rate',
  },
  {
    name: 'a baseline failing as much as the canary blames nothing on the canary',
    baseline: v(2000, 200),
    canary: v(200, 22),
    outcome: 'pass',
  },
  {
    name: 'a latency shift past both limits is a breach',
    baseline: v(2000, 0, 100),
    canary: v(200, 0, 400),
    outcome: 'breach',
    figure: 'p95',
    reason: /^canary p95 400\.0 ms exceeds baseline p95 100\.0 ms x 1\.5 and \+ 100 ms \(200 vs 2000 requests\)$/,
  },
  {
    name: 'tripled but small latencies pass (difference under maxP95IncreaseMs)',
    baseline: v(2000, 0, 10),
    canary: v(200, 0, 30),
    outcome: 'pass',
  },
  {
    name: 'a large but proportionally small latency increase passes (ratio under maxP95Ratio)',
    baseline: v(2000, 0, 1000),
    canary: v(200, 0, 1200),
    outcome: 'pass',
  },
  {
    name: 'a canary without usable instances is a breach even before any traffic',
    baseline: v(0, 0),
    canary: v(0, 0),
    usable: false,
    outcome: 'breach',
    figure: 'usable',
    reason: /^canary has no usable instance/,
  },
  {
    name: 'errors are judged before latency',
    baseline: v(2000, 0, 100),
    canary: v(200, 40, 900),
    outcome: 'breach',
    figure: 'error_rate',
  },
]

describe('canary verdict', () => {
  for (const c of cases) {
    it(c.name, () => {
      const verdict = judge(c.baseline, c.canary, c.usable ?? true, { ...limits, ...c.limits })
      expect(verdict.outcome).toBe(c.outcome)
      if (c.figure) expect(verdict.figure).toBe(c.figure)
      if (c.reason) expect(verdict.reason).toMatch(c.reason)
    })
  }

  it('a pass says what was compared and on how many requests', () => {
    const { reason } = judge(v(1000, 1, 12), v(150, 0, 13), true, limits)
    expect(reason).toBe(
      'canary error rate 0 within baseline 0.001 + 0.02; ' +
        'canary p95 13.0 ms within baseline p95 12.0 ms x 1.5 and + 100 ms (150 vs 1000 requests)',
    )
  })

  it('with the default limits, at most one error in the canary never breaches on errors', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 100_000 }),
        fc.integer({ min: 0, max: 1 }),
        fc.integer({ min: 100, max: 100_000 }),
        (n, e, m) => {
          const verdict = judge(v(m, 0), v(n, e), true, limits)
          expect(verdict.outcome).toBe('pass')
        },
      ),
    )
  })

  it('a real 10% error rate is caught within the first few hundred requests', () => {
    let caughtAt = 0
    for (let n = 100; n <= 1000 && caughtAt === 0; n += 10) {
      if (judge(v(n * 9, Math.round(n * 9 * 0.001)), v(n, n / 10), true, limits).outcome === 'breach') caughtAt = n
    }
    expect(caughtAt).toBeGreaterThan(0)
    expect(caughtAt).toBeLessThanOrEqual(300)
  })

  it('the confidence defaults to 0.99', () => {
    const { confidence: _, ...rest } = limits
    expect(judge(v(100, 0), v(100, 3), true, rest).outcome).toBe('pass')
  })
})

describe('statistics', () => {
  it('normalQuantile gives the textbook critical values', () => {
    expect(normalQuantile(0.5)).toBeCloseTo(0, 9)
    expect(normalQuantile(0.95)).toBeCloseTo(1.644854, 5)
    expect(normalQuantile(0.99)).toBeCloseTo(2.326348, 5)
    expect(normalQuantile(0.999)).toBeCloseTo(3.090232, 5)
    expect(normalQuantile(0.01)).toBeCloseTo(-2.326348, 5)
    expect(() => normalQuantile(1)).toThrow(RangeError)
  })

  it('the excess z is 0 on the margin without variance, and rises with the excess and the sample', () => {
    expect(excessZ(0, 100, 0, 100, 0)).toBe(0)
    expect(excessZ(100, 100, 0, 100, 0.02)).toBe(Number.POSITIVE_INFINITY)
    expect(excessZ(0, 100, 0, 100, 0.02)).toBe(Number.NEGATIVE_INFINITY)
    expect(excessZ(3, 100, 0, 100, 0.02)).toBeCloseTo(0.586, 2)
    expect(excessZ(30, 1000, 0, 1000, 0.02)).toBeGreaterThan(excessZ(3, 100, 0, 100, 0.02))
    expect(excessZ(1, 100, 0, 100, 0.02)).toBeLessThan(0)
  })
})
