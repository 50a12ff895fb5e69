import { createHash, timingSafeEqual } from 'node:crypto'
import type { AdminToken } from '../config/load.js'

/**
 * Bearer-token check in constant time: every configured token is compared
 * (as SHA-256 digests, so lengths never leak) whichever matches.
 */
export class TokenCheck {
  readonly #tokens: { name: string; digest: Buffer }[]

  constructor(tokens: readonly AdminToken[]) {
    this.#tokens = tokens.map((t) => ({ name: t.name, digest: digest(t.token) }))
  }

  /** No token configured (allowed on a loopback admin listener only): every caller is anonymous. */
  get open(): boolean {
    return this.#tokens.length === 0
  }

  /** The token's name (the audit actor), or undefined when missing or wrong. */
  actor(authorization: string | undefined): string | undefined {
    if (this.open) return 'anonymous'
    if (authorization === undefined || !authorization.startsWith('Bearer ')) return undefined
    const given = digest(authorization.slice(7).trim())
    let found: string | undefined
    for (const t of this.#tokens) {
      if (timingSafeEqual(t.digest, given) && found === undefined) found = t.name
    }
    return found
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}
