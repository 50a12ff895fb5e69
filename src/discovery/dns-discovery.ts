import type { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { Logger } from 'pino'
import type { DiscoverSpec } from '../config/load.js'
import type { Discovered } from './membership.js'

/** A TTL shorter than this counts as this long: a zero-TTL record never turns into a busy loop. */
export const TTL_FLOOR_MS = 1000

/** What one lookup found: origins and the shortest TTL, nothing (NXDOMAIN or no records), or no answer at all. */
export type LookupResult =
  | { kind: 'answer'; urls: string[]; ttlMs: number }
  | { kind: 'empty' }
  | { kind: 'failed'; error: string }

/** node:dns codes that are an answer saying "nothing here", as opposed to no answer. */
const EMPTY_CODES = new Set(['ENODATA', 'ENOTFOUND'])

export interface DnsDiscoveryOptions {
  version: string
  spec: DiscoverSpec
  resolver: Resolver
  log: Logger
  /** The version's addresses changed (or the first answer came). */
  onAddresses(d: Discovered): void
  /** A failed lookup, or an empty answer while keeping the last-known set. */
  onError(): void
}

/**
 * Follows one version's DNS name: re-resolves at the earlier of the records'
 * TTL and `intervalMs`, and reports each change of the address set. A failed
 * lookup keeps the last-known set; an empty answer empties it only after
 * `emptyAfter` in a row, so one bad answer never drops a version. Logs once
 * per change of condition (ok, failed, empty), not once per lookup.
 */
export class DnsDiscovery {
  /** Any DNS response arrived (even an empty one): readyz waits for it. */
  answered = false
  readonly #o: DnsDiscoveryOptions
  readonly #source: 'dns' | 'srv'
  #last: string[] | undefined
  #emptyStreak = 0
  #condition: 'ok' | 'failed' | 'empty' | undefined
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  constructor(opts: DnsDiscoveryOptions) {
    this.#o = opts
    this.#source = opts.spec.srv !== undefined ? 'srv' : 'dns'
  }

  start(): void {
    void this.#round()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  /** One lookup, without side effects. */
  lookup(): Promise<LookupResult> {
    const { spec, resolver } = this.#o
    return spec.srv !== undefined ? lookupSrv(resolver, spec.srv) : lookupHost(resolver, spec.dns!, spec.port!)
  }

  async #round(): Promise<void> {
    if (this.#stopped) return
    const result = await this.lookup()
    if (this.#stopped) return
    const ttlMs = this.#apply(result)
    const interval = this.#o.spec.intervalMs
    const delay = ttlMs === undefined ? interval : Math.min(interval, Math.max(ttlMs, TTL_FLOOR_MS))
    this.#timer = setTimeout(() => void this.#round(), delay)
    this.#timer.unref()
  }

  /** Returns the answer's TTL in ms, if it had records. */
  #apply(r: LookupResult): number | undefined {
    const { log, version, spec } = this.#o
    const name = spec.srv ?? spec.dns
    if (r.kind === 'failed') {
      this.#o.onError()
      if (this.#condition !== 'failed')
        log.warn({ version, name, error: r.error, kept: this.#last?.length ?? 0 }, 'discovery lookup failed: keeping the last-known instances')
      this.#condition = 'failed'
      return undefined
    }
    this.answered = true
    if (r.kind === 'empty') {
      this.#emptyStreak++
      const had = this.#last !== undefined && this.#last.length > 0
      if (had) this.#o.onError()
      if (this.#condition !== 'empty')
        log.warn({ version, name, kept: this.#last?.length ?? 0 }, 'discovery answer is empty')
      this.#condition = 'empty'
      if (!had || this.#emptyStreak >= spec.emptyAfter) this.#report([])
      return undefined
    }
    this.#emptyStreak = 0
    if (this.#condition !== 'ok' && this.#condition !== undefined)
      log.info({ version, name, instances: r.urls.length }, 'discovery answers again')
    this.#condition = 'ok'
    this.#report(r.urls)
    return r.ttlMs
  }

  #report(urls: string[]): void {
    const sorted = [...urls].sort()
    if (this.#last !== undefined && sameList(this.#last, sorted)) return
    const before = this.#last?.length ?? 0
    this.#last = sorted
    this.#o.log.info({ version: this.#o.version, before, after: sorted.length }, 'discovered instances changed')
    this.#o.onAddresses({ source: this.#source, urls: sorted })
  }
}

type Addresses = { kind: 'answer'; addresses: string[]; ttlMs: number } | { kind: 'empty' } | { kind: 'failed'; error: string }

/** A and AAAA together: an answer if either has records, failed if either failed. */
async function addressesOf(resolver: Resolver, name: string): Promise<Addresses> {
  if (isIP(name) !== 0) return { kind: 'answer', addresses: [name], ttlMs: Number.POSITIVE_INFINITY }
  const answers = await Promise.allSettled([resolver.resolve4(name, { ttl: true }), resolver.resolve6(name, { ttl: true })])
  const addresses: string[] = []
  let ttlMs = Number.POSITIVE_INFINITY
  for (const a of answers) {
    if (a.status === 'fulfilled') {
      for (const rec of a.value) {
        addresses.push(rec.address)
        ttlMs = Math.min(ttlMs, rec.ttl * 1000)
      }
    } else if (!EMPTY_CODES.has(errorCode(a.reason))) {
      return { kind: 'failed', error: errorCode(a.reason) }
    }
  }
  return addresses.length > 0 ? { kind: 'answer', addresses, ttlMs } : { kind: 'empty' }
}

async function lookupHost(resolver: Resolver, name: string, port: number): Promise<LookupResult> {
  const a = await addressesOf(resolver, name)
  if (a.kind !== 'answer') return a
  return { kind: 'answer', urls: a.addresses.map((addr) => origin(addr, port)), ttlMs: a.ttlMs }
}

/** SRV records, each target resolved with the same resolver; every address on the record's port. */
async function lookupSrv(resolver: Resolver, name: string): Promise<LookupResult> {
  let records: { name: string; port: number }[]
  try {
    records = await resolver.resolveSrv(name)
  } catch (err) {
    const code = errorCode(err)
    return EMPTY_CODES.has(code) ? { kind: 'empty' } : { kind: 'failed', error: code }
  }
  const targets = await Promise.all(records.map((r) => addressesOf(resolver, r.name)))
  const urls = new Set<string>()
  let ttlMs = Number.POSITIVE_INFINITY
  for (let i = 0; i < records.length; i++) {
    const t = targets[i]!
    if (t.kind === 'failed') return t
    if (t.kind === 'empty') continue
    ttlMs = Math.min(ttlMs, t.ttlMs)
    for (const addr of t.addresses) urls.add(origin(addr, records[i]!.port))
  }
  return urls.size > 0 ? { kind: 'answer', urls: [...urls], ttlMs } : { kind: 'empty' }
}

function origin(address: string, port: number): string {
  return new URL(`http://${isIP(address) === 6 ? `[${address}]` : address}:${port}`).origin
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : String((err as Error)?.message ?? err)
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
