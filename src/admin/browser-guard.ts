import type { IncomingMessage } from 'node:http'
import { isLoopback } from '../config/schema.js'
import { AdminError } from '../errors.js'

const JSON_TYPE = /^application\/(.+\+)?json\s*(;|$)/i

/**
 * What keeps a browser page elsewhere out of a token-less (loopback-only)
 * admin API, where the only thing between a page and `/v1/*` is that the
 * listener is on loopback:
 * - DNS rebinding: a name the attacker controls is made to resolve to
 *   127.0.0.1; the page is then same-origin with the admin, but its `Host`
 *   is the attacker's name. Only loopback addresses, `localhost` and the
 *   configured host pass.
 * - Cross-site requests: a form or a `fetch` with a "simple" content type
 *   reaches the admin without a CORS preflight. A present `Origin` must be the
 *   admin's own, and every POST/PUT must say `application/json`, which no
 *   page elsewhere can send without a preflight the admin never grants.
 * With a token none of this applies: browsers never attach a bearer token on
 * their own, and a script elsewhere cannot send one without that preflight.
 * README "Admin API" states the rules.
 */
export class BrowserGuard {
  readonly #host: string
  readonly #origins: Set<string>

  /** `host` as configured (`127.0.0.1`, `::1`, `localhost`), `port` as bound. */
  constructor(host: string, port: number) {
    this.#host = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
    const names = new Set([bracketed(this.#host), 'localhost', '127.0.0.1', '[::1]'])
    this.#origins = new Set()
    for (const name of names) {
      this.#origins.add(`http://${name}:${port}`)
      // A browser leaves out the scheme's default port.
      if (port === 80) this.#origins.add(`http://${name}`)
    }
  }

  /** Throws the 403 or 415 a request from elsewhere gets; returns for the admin's own callers. */
  check(req: IncomingMessage): void {
    const host = req.headers.host
    if (host === undefined || !this.#hostAllowed(hostName(host)))
      throw new AdminError(403, 'SLUICE_FORBIDDEN_HOST', 'Host must be a loopback address or the admin host')
    const origin = req.headers.origin
    if (origin !== undefined && !this.#origins.has(origin.toLowerCase()))
      throw new AdminError(403, 'SLUICE_FORBIDDEN_ORIGIN', 'Origin is not the admin API itself')
    if ((req.method === 'POST' || req.method === 'PUT') && !JSON_TYPE.test(req.headers['content-type'] ?? ''))
      throw new AdminError(415, 'SLUICE_UNSUPPORTED_MEDIA_TYPE', 'POST and PUT need Content-Type: application/json')
  }

  #hostAllowed(name: string): boolean {
    return name === this.#host || isLoopback(name)
  }
}

/** The name part of a Host header, lower-cased, without port or IPv6 brackets. */
function hostName(host: string): string {
  const h = host.toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end === -1 ? h : h.slice(1, end)
  }
  const colon = h.indexOf(':')
  return colon === -1 ? h : h.slice(0, colon)
}

function bracketed(host: string): string {
  return host.includes(':') ? `[${host}]` : host
}
