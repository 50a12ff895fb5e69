import { describe, expect, it } from 'vitest'
import { type MismatchEntry, MismatchLog } from '../../../src/mirror/mismatch-log.js'

const entry = (path: string): MismatchEntry => ({
  at: new Date(0).toISOString(),
  version: 'green',
  method: 'GET',
  path,
  primaryStatus: 200,
  shadowStatus: 500,
  differs: ['status'],
  primaryMs: 1,
  shadowMs: 2,
})

describe('mismatch log', () => {
  it('keeps the last few, newest last, with long paths shortened', () => {
    const log = new MismatchLog(3)
    for (let i = 0; i < 5; i++) log.add(entry(`/p${i}`))
    expect(log.list().map((e) => e.path)).toEqual(['/p2', '/p3', '/p4'])
    log.add(entry(`/${'x'.repeat(500)}`))
    expect(log.list().at(-1)!.path).toHaveLength(203)
  })
})

describe('mismatch log with workers', () => {
  const at = (ms: number, path: string): MismatchEntry => ({ ...entry(path), at: new Date(ms).toISOString() })

  it("a worker's report takes what was added since the last one, never more than the log keeps", () => {
    const log = new MismatchLog(3)
    expect(log.takeNew()).toEqual([])
    log.add(entry('/a'))
    log.add(entry('/b'))
    expect(log.takeNew().map((e) => e.path)).toEqual(['/a', '/b'])
    expect(log.takeNew()).toEqual([])
    for (let i = 0; i < 10; i++) log.add(entry(`/f${i}`))
    expect(log.takeNew().map((e) => e.path)).toEqual(['/f7', '/f8', '/f9'])
  })

  it("the primary's log keeps every worker's entries in time order, the newest up to its size", () => {
    const log = new MismatchLog(4)
    log.merge([at(10, '/w1-a'), at(30, '/w1-b')])
    log.merge([at(20, '/w2-a'), at(40, '/w2-b')])
    expect(log.list().map((e) => e.path)).toEqual(['/w1-a', '/w2-a', '/w1-b', '/w2-b'])
    log.merge([at(5, '/old'), at(35, '/w3')])
    expect(log.list().map((e) => e.path)).toEqual(['/w2-a', '/w1-b', '/w3', '/w2-b'])
  })
})
