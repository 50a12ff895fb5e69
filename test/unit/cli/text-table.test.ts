import fc from 'fast-check'
import { expect, test } from 'vitest'
import { formatPairs, formatTable } from '../../../src/cli/text-table.js'

const cell = fc.stringMatching(/^[a-z0-9.:/-]{1,12}$/)

test('every column starts at the same place on every line', () => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 1, max: 5 })
        .chain((cols) =>
          fc.tuple(
            fc.array(cell, { minLength: cols, maxLength: cols }),
            fc.array(fc.array(cell, { minLength: cols, maxLength: cols })),
          ),
        ),
      ([header, rows]) => {
        const lines = formatTable(header, rows).split('\n')
        expect(lines).toHaveLength(rows.length + 1)
        const starts = (line: string) => [...line.matchAll(/(?:^| {2})(\S)/g)].map((m) => m.index! + (m[0].length - 1))
        const first = starts(lines[0]!)
        for (const line of lines) expect(starts(line)).toEqual(first)
      },
    ),
  )
})

test('right-aligned columns end together and no line ends in spaces', () => {
  const out = formatTable(
    ['NAME', 'N', 'NOTE'],
    [
      ['a', '5', ''],
      ['bb', '120', 'x'],
    ],
    { align: ['left', 'right'], indent: '  ' },
  )
  expect(out).toBe(['  NAME    N  NOTE', '  a       5', '  bb    120  x'].join('\n'))
})

test('pairs pad their keys to one width', () => {
  expect(
    formatPairs([
      ['status', 'idle'],
      ['on breach', 'pause'],
    ]),
  ).toBe('status     idle\non breach  pause')
})
