import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DenseSet, kSlot } from '../../../src/proxy/dense-set.js'

interface Item {
  id: number
  [kSlot]?: number
}

const items = (n: number): Item[] => Array.from({ length: n }, (_, id) => ({ id }))

function members(set: DenseSet<Item>): Item[] {
  const out: Item[] = []
  set.forEach((item) => out.push(item))
  return out
}

describe('a dense set', () => {
  it('holds exactly what a Set would, whatever the order of adds and removes', () => {
    const op = fc.record({ add: fc.boolean(), i: fc.nat({ max: 19 }) })
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const pool = items(20)
        const list = new DenseSet<Item>()
        const model = new Set<Item>()
        for (const { add, i } of ops) {
          const item = pool[i]!
          if (add) {
            list.add(item)
            model.add(item)
          } else {
            expect(list.delete(item)).toBe(model.delete(item))
          }
          expect(list.size).toBe(model.size)
        }
        for (const item of pool) expect(list.has(item)).toBe(model.has(item))
        expect(new Set(members(list))).toEqual(model)
        // Every held item knows its place (forEach walks from the end); every other one is marked as held nowhere.
        members(list).forEach((item, i, all) => expect(item[kSlot]).toBe(all.length - 1 - i))
        for (const item of pool) if (!model.has(item)) expect(item[kSlot] ?? -1).toBe(-1)
      }),
    )
  })

  it('visits every member once while the visitor removes the ones it is given', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 100 }), (removeIt) => {
        const pool = items(removeIt.length)
        const list = new DenseSet<Item>()
        for (const item of pool) list.add(item)
        const seen: number[] = []
        list.forEach((item) => {
          seen.push(item.id)
          if (removeIt[item.id]) list.delete(item)
        })
        expect(seen.sort((a, b) => a - b)).toEqual(pool.map((p) => p.id))
        expect(list.size).toBe(removeIt.filter((r) => !r).length)
      }),
    )
  })

  it('tells an item held by another list from its own', () => {
    const [a, b] = items(2) as [Item, Item]
    const one = new DenseSet<Item>()
    const two = new DenseSet<Item>()
    one.add(a)
    two.add(b)
    // b sits in slot 0 of `two`, and slot 0 of `one` holds a: not b.
    expect(one.has(b)).toBe(false)
    expect(one.delete(b)).toBe(false)
    expect(two.has(b)).toBe(true)
  })
})
