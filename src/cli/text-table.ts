/**
 * Plain-text tables with aligned columns, for terminals and for `grep`/`awk`:
 * no colour, no box drawing, two spaces between columns, no trailing spaces.
 * (Hand-written: a few dozen lines, and table packages draw boxes or colour.)
 */

export type Align = 'left' | 'right'

export interface TableOptions {
  /** Per column; a missing entry is left-aligned. */
  align?: readonly Align[]
  /** Put before every line, e.g. two spaces under a section title. */
  indent?: string
}

export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  opts: TableOptions = {},
): string {
  const all = [header, ...rows]
  const widths = header.map((_, col) => Math.max(...all.map((r) => width(r[col] ?? ''))))
  const indent = opts.indent ?? ''
  return all
    .map((r) => {
      const cells = header.map((_, col) => pad(r[col] ?? '', widths[col]!, opts.align?.[col] ?? 'left'))
      return (indent + cells.join('  ')).trimEnd()
    })
    .join('\n')
}

/** Key/value lines with the keys padded to one width. */
export function formatPairs(pairs: readonly (readonly [string, string])[], indent = ''): string {
  const w = Math.max(0, ...pairs.map(([k]) => width(k)))
  return pairs.map(([k, v]) => (indent + pad(k, w, 'left') + '  ' + v).trimEnd()).join('\n')
}

function pad(s: string, w: number, align: Align): string {
  const fill = ' '.repeat(Math.max(0, w - width(s)))
  return align === 'right' ? fill + s : s + fill
}

/** Code points, not UTF-16 units, so an ellipsis or an accented name counts once. */
function width(s: string): number {
  let n = 0
  for (const _ of s) n++
  return n
}
