import { stringify as stableJson } from 'safe-stable-stringify'

/**
 * JSON pointers (RFC 6901, https://www.rfc-editor.org/rfc/rfc6901) for the
 * `mirror.ignore` rules: "/meta/requestId" names one field of a JSON body
 * that may differ between the primary and the shadow. One extension: a
 * token `*` stands for every member of an object or element of an array
 * (the tokens "items", "*", "updatedAt" ignore the timestamp of every item),
 * since timestamps usually sit in lists.
 */

/** The reference tokens of a valid pointer, unescaped ("~1" is "/", "~0" is "~"). */
export function parsePointer(pointer: string): string[] {
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'))
}

/**
 * Removes what `tokens` points at from `doc`, in place. An object member is
 * deleted; an array element is replaced by null so the positions of the
 * others stay comparable. A pointer that leads nowhere changes nothing.
 */
export function removePointer(doc: unknown, tokens: readonly string[], from = 0): void {
  if (from >= tokens.length || doc === null || typeof doc !== 'object') return
  const token = tokens[from]!
  const last = from === tokens.length - 1
  if (Array.isArray(doc)) {
    if (token === '*') {
      for (let i = 0; i < doc.length; i++) {
        if (last) doc[i] = null
        else removePointer(doc[i], tokens, from + 1)
      }
      return
    }
    const i = arrayIndex(token)
    if (i === undefined || i >= doc.length) return
    if (last) doc[i] = null
    else removePointer(doc[i], tokens, from + 1)
    return
  }
  const obj = doc as Record<string, unknown>
  if (token === '*') {
    for (const k of Object.keys(obj)) {
      if (last) delete obj[k]
      else removePointer(obj[k], tokens, from + 1)
    }
    return
  }
  if (!Object.hasOwn(obj, token)) return
  if (last) delete obj[token]
  else removePointer(obj[token], tokens, from + 1)
}

function arrayIndex(token: string): number | undefined {
  return /^(0|[1-9][0-9]*)$/.test(token) ? Number(token) : undefined
}

/**
 * JSON text with object members in sorted order, so two bodies that differ
 * only in member order (a serialiser change, not a behaviour change) compare
 * equal.
 */
export function canonicalJson(value: unknown): string {
  return stableJson(value) ?? 'null'
}
