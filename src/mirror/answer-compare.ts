/** One answer as it is compared: status, the compared headers, the body digest. */
export interface ComparedAnswer {
  status: number
  /** Compared headers only (ignored ones already left out), values of repeated headers joined by "\n". */
  headers: Record<string, string>
  /** From BodyDigest; empty when the body was not seen. */
  body: string
}

/**
 * The headers of an answer that take part in the comparison, from the flat
 * name/value list of the response (lower-case names, hop-by-hop headers
 * already left out, as responseHeaderList makes it).
 */
export function comparedHeaders(
  list: readonly (string | string[])[],
  ignore: ReadonlySet<string>,
): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i] as string
    if (ignore.has(name)) continue
    const v = list[i + 1]!
    out[name] = typeof v === 'string' ? v : v.join('\n')
  }
  return out
}

/**
 * Which parts of two answers differ, for the operator: `status`,
 * `header:<name>` (one per differing header, sorted) and `body`. Empty when
 * they match.
 */
export function differences(primary: ComparedAnswer, shadow: ComparedAnswer): string[] {
  const out: string[] = []
  if (primary.status !== shadow.status) out.push('status')
  if (!sameHeaders(primary.headers, shadow.headers)) {
    const names = new Set([...Object.keys(primary.headers), ...Object.keys(shadow.headers)])
    for (const name of [...names].sort()) {
      if (primary.headers[name] !== shadow.headers[name]) out.push(`header:${name}`)
    }
  }
  if (primary.body !== shadow.body) out.push('body')
  return out
}

/** The common case, checked without allocating: the same names with the same values. */
function sameHeaders(a: Record<string, string>, b: Record<string, string>): boolean {
  let count = 0
  for (const name in a) {
    if (a[name] !== b[name]) return false
    count++
  }
  for (const _ in b) count--
  return count === 0
}
