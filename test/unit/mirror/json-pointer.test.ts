import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalJson, parsePointer, removePointer } from '../../../src/mirror/json-pointer.js'

function without(doc: unknown, ...pointers: string[]): unknown {
  const copy = structuredClone(doc)
  for (const p of pointers) removePointer(copy, parsePointer(p))
  return copy
}

describe('JSON pointers for mirror ignores', () => {
  it('parses tokens and unescapes ~1 and ~0 (RFC 6901)', () => {
    expect(parsePointer('/a/b')).toEqual(['a', 'b'])
    expect(parsePointer('/a~1b/m~0n')).toEqual(['a/b', 'm~n'])
    expect(parsePointer('/')).toEqual([''])
    expect(parsePointer('/items/0')).toEqual(['items', '0'])
  })

  it('removes an object member, nested or not, and leaves the rest', () => {
    const doc = { id: 1, meta: { requestId: 'x', kept: true }, at: 't' }
    expect(without(doc, '/at')).toEqual({ id: 1, meta: { requestId: 'x', kept: true } })
    expect(without(doc, '/meta/requestId')).toEqual({ id: 1, meta: { kept: true }, at: 't' })
    expect(without({ 'a/b': 1, c: 2 }, '/a~1b')).toEqual({ c: 2 })
  })

  it('nulls an array element so the positions of the others stay comparable', () => {
    expect(without({ list: [1, 2, 3] }, '/list/1')).toEqual({ list: [1, null, 3] })
    expect(without({ list: [1, 2, 3] }, '/list/7')).toEqual({ list: [1, 2, 3] })
    expect(without({ list: [1, 2, 3] }, '/list/01')).toEqual({ list: [1, 2, 3] })
  })

  it('"*" stands for every element or member', () => {
    const doc = { items: [{ id: 1, ts: 5 }, { id: 2, ts: 6 }, 'plain'] }
    expect(without(doc, '/items/*/ts')).toEqual({ items: [{ id: 1 }, { id: 2 }, 'plain'] })
    expect(without({ by: { a: { ts: 1, v: 1 }, b: { ts: 2, v: 2 } } }, '/by/*/ts')).toEqual({
      by: { a: { v: 1 }, b: { v: 2 } },
    })
    expect(without({ tags: ['x', 'y'] }, '/tags/*')).toEqual({ tags: [null, null] })
  })

  it('a pointer that leads nowhere changes nothing', () => {
    const doc = { a: { b: 1 }, n: null, s: 'str' }
    expect(without(doc, '/x/y', '/a/b/c', '/n/z', '/s/0')).toEqual(doc)
    expect(without('scalar', '/a')).toBe('scalar')
  })

  it('canonical JSON ignores member order and keeps the value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalJson(value)
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)))
        expect(canonicalJson(reversedMembers(value))).toBe(text)
      }),
    )
  })
})

/** The same value with every object's members in reverse order. */
function reversedMembers(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reversedMembers)
  if (v === null || typeof v !== 'object') return v
  const out: Record<string, unknown> = {}
  // defineProperty, so a "__proto__" member stays a member.
  for (const k of Object.keys(v).reverse()) {
    Object.defineProperty(out, k, {
      value: reversedMembers((v as Record<string, unknown>)[k]),
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return out
}
