import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BodyDigest } from '../../../src/mirror/body-digest.js'
import { parsePointer } from '../../../src/mirror/json-pointer.js'

function digestOf(
  chunks: readonly Buffer[],
  opts: { pointers?: string[]; maxBytes?: number; type?: string; smallBytes?: number } = {},
): string {
  const d = new BodyDigest((opts.pointers ?? []).map(parsePointer), opts.maxBytes ?? 65536, {
    smallBytes: opts.smallBytes ?? 1024,
  })
  d.begin(opts.type ?? 'application/json')
  for (const c of chunks) d.update(c)
  return d.digest()
}

/** `bytes` cut at the given points. */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let from = 0
  for (const p of points) {
    out.push(bytes.subarray(from, p))
    from = p
  }
  out.push(bytes.subarray(from))
  return out
}

describe('body digest', () => {
  it('does not depend on how the body is cut into chunks', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 200 }),
        (raw, cuts, withPointers, smallBytes) => {
          // Across the kept/hashed boundary (smallBytes) and the JSON bound (maxBytes) alike.
          const bytes = Buffer.from(raw)
          const opts = { pointers: withPointers ? ['/a'] : [], maxBytes: 100, smallBytes }
          expect(digestOf(split(bytes, cuts), opts)).toBe(digestOf([bytes], opts))
        },
      ),
    )
  })

  it('different bytes give different digests, kept or hashed', () => {
    expect(digestOf([Buffer.from('{"a":1}')])).not.toBe(digestOf([Buffer.from('{"a":2}')]))
    expect(digestOf([Buffer.from('{"a":1}')], { smallBytes: 2 })).not.toBe(
      digestOf([Buffer.from('{"a":2}')], { smallBytes: 2 }),
    )
    expect(digestOf([Buffer.from('{"a":1}')], { smallBytes: 2 })).toMatch(/^raw:/)
    expect(digestOf([])).toBe(digestOf([Buffer.alloc(0)]))
  })

  it('JSON pointers make ignored fields, and member order, irrelevant', () => {
    const a = Buffer.from(JSON.stringify({ id: 7, at: '2026-01-01', meta: { rid: 'a' } }))
    const b = Buffer.from(JSON.stringify({ meta: { rid: 'b' }, at: '2027-12-31', id: 7 }))
    const c = Buffer.from(JSON.stringify({ id: 8, at: '2026-01-01', meta: { rid: 'a' } }))
    const pointers = ['/at', '/meta/rid']
    expect(digestOf([a], { pointers })).toBe(digestOf([b], { pointers }))
    expect(digestOf([a], { pointers })).not.toBe(digestOf([c], { pointers }))
    expect(digestOf([a], { pointers })).toMatch(/^json:/)
    // Without pointers the raw bytes count.
    expect(digestOf([a])).not.toBe(digestOf([b]))
  })

  it('only JSON content types are parsed; others, bad JSON and bodies over the bound are hashed raw', () => {
    const body = Buffer.from('{"at":1,"v":2}')
    const raw = digestOf([body])
    expect(raw).toMatch(/^bytes:/)
    expect(digestOf([body], { pointers: ['/at'], type: 'text/plain' })).toBe(raw)
    expect(digestOf([body], { pointers: ['/at'], type: 'application/problem+json; charset=utf-8' })).toMatch(/^json:/)
    expect(digestOf([body], { pointers: ['/at'], maxBytes: 5 })).toBe(raw)
    const bad = Buffer.from('{"at":1,')
    expect(digestOf([bad], { pointers: ['/at'] })).toBe(digestOf([bad]))
  })
})
