import { randomBytes } from 'node:crypto'

/**
 * Request IDs (README "Request IDs"): the client's own when it sent a sane
 * one, otherwise a new one.
 *
 * A new ID is a per-process random prefix and a counter, as Envoy's and
 * HAProxy's unique IDs are built from per-process parts: it is unique
 * without a random draw per request (74 random bits tell processes apart,
 * the 48-bit counter tells requests apart), and it is shaped as an RFC 9562
 * version 8 UUID so that applications that validate a UUID accept it.
 */
const PREFIX = uuidPrefix(randomBytes(10).toString('hex'))
const COUNTER_DIGITS = 12
let counter = 0

function uuidPrefix(hex: string): string {
  const variant = ((Number.parseInt(hex[15]!, 16) & 0x3) | 0x8).toString(16)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(12, 15)}-${variant}${hex.slice(16, 19)}-`
}

export function newRequestId(): string {
  counter = counter === 0xffff_ffff_ffff ? 1 : counter + 1
  return PREFIX + counter.toString(16).padStart(COUNTER_DIGITS, '0')
}

/** Longer client IDs are replaced: they would bloat every log line and upstream request. */
export const MAX_CLIENT_ID = 200

/**
 * The client's ID when it is 1 to 200 visible ASCII characters (no space,
 * no control character, no obs-text), so that it is safe in a log line and
 * a header as it is; a repeated header reaches here joined with ", " and is
 * replaced too.
 */
export function saneRequestId(value: string | string[] | undefined): value is string {
  if (typeof value !== 'string') return false
  const n = value.length
  if (n === 0 || n > MAX_CLIENT_ID) return false
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

/** The ID a request carries upstream and back: the client's sane one, or a new one. */
export function requestIdOf(value: string | string[] | undefined): string {
  return saneRequestId(value) ? value : newRequestId()
}
