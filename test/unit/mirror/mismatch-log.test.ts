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
