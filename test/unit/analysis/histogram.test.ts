import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BUCKETS, bucketIndex, bucketValueMs, LatencyHistogram } from '../../../src/analysis/histogram.js'

/** Nearest-rank quantile of a sorted array: the definition the histogram approximates. */
function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!
}

const latency = fc.double({ min: 0.05, max: 60000, noNaN: true })

describe('latency histogram', () => {
  /** The histogram's quantile of `xs` is within 3%, plus 0.5 µs of rounding to whole microseconds. */
  function expectCloseQuantile(xs: number[], q: number): void {
    const h = new LatencyHistogram()
    for (const x of xs) h.record(x)
    const exact = exactQuantile(
      [...xs].sort((a, b) => a - b),
      q,
    )
    expect(Math.abs(h.quantile(q) - exact)).toBeLessThanOrEqual(exact * 0.03 + 0.0005)
  }

  it('reads p50, p95 and p99 within 3% of the exact quantile from 0.05 ms to 60 s', () => {
    fc.assert(
      fc.property(fc.array(latency, { minLength: 1, maxLength: 400 }), fc.constantFrom(0.5, 0.95, 0.99), (xs, q) =>
        expectCloseQuantile(xs, q),
      ),
    )
  })

  it('reads any quantile of a skewed distribution within 3%', () => {
    const unit = fc.double({ min: 0, max: 1, noNaN: true })
    fc.assert(
      fc.property(
        fc.array(unit, { minLength: 1, maxLength: 300 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        (us, q) =>
          // spread over six decades, like real latencies
          expectCloseQuantile(
            us.map((u) => 0.05 * 10 ** (u * 6)),
            q,
          ),
      ),
    )
  })

  it('bucket indexes rise with the latency and stay in range', () => {
    fc.assert(
      fc.property(
        fc.double({ min: -10, max: 1e6, noNaN: true }),
        fc.double({ min: -10, max: 1e6, noNaN: true }),
        (a, b) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a]
          const i = bucketIndex(lo)
          const j = bucketIndex(hi)
          expect(i).toBeGreaterThanOrEqual(0)
          expect(j).toBeLessThan(BUCKETS)
          expect(i).toBeLessThanOrEqual(j)
        },
      ),
    )
  })

  it('each bucket stands for a value inside it', () => {
    for (let i = 0; i < BUCKETS; i++) expect(bucketIndex(bucketValueMs(i))).toBe(i)
  })

  it('counts NaN and negative latencies as 0 and clamps very long ones into the top bucket', () => {
    expect(bucketIndex(Number.NaN)).toBe(0)
    expect(bucketIndex(-5)).toBe(0)
    expect(bucketIndex(1e9)).toBe(BUCKETS - 1)
    expect(bucketIndex(Number.POSITIVE_INFINITY)).toBe(BUCKETS - 1)
  })

  it('an empty histogram reads 0', () => {
    expect(new LatencyHistogram().quantile(0.95)).toBe(0)
  })

  it('survives a round trip through its sparse plain-data form', () => {
    fc.assert(
      fc.property(fc.array(latency, { maxLength: 100 }), (xs) => {
        const h = new LatencyHistogram()
        for (const x of xs) h.record(x)
        const copy = LatencyHistogram.fromSparse(JSON.parse(JSON.stringify(h.toSparse())))
        expect(copy.total).toBe(xs.length)
        expect([...copy.counts]).toEqual([...h.counts])
      }),
    )
  })

  it('ignores out-of-range buckets in sparse input from a peer', () => {
    const h = LatencyHistogram.fromSparse([BUCKETS, 5, -1, 2, 1.5, 3, 10, 2])
    expect(h.total).toBe(2)
  })
})
