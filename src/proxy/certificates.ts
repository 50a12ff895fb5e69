import { type FSWatcher, readFileSync, watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'
import type { Logger } from 'pino'
import { ConfigError, describeCause, type Problem, TlsCertificateError } from '../errors.js'

export interface CertificateFiles {
  readonly cert: string
  readonly key: string
}

/** listen.tls: the default pair and, by server name, more pairs (README "TLS and HTTP/2"). */
export interface TlsSettings extends CertificateFiles {
  readonly sni: readonly (CertificateFiles & { readonly names: readonly string[] })[]
}

/** TLS 1.2 and later; the ciphers are Node's defaults. */
export const MIN_TLS_VERSION = 'TLSv1.2'

/**
 * A change on disk is seen by the directory watch at once; the poll catches
 * what a watch can miss (a directory replaced, a network file system) well
 * within the 5 s the README promises.
 */
const POLL_MS = 2000
/** Events come in bursts (a rename, a symlink swap, two files): read once they settle. */
const SETTLE_MS = 50
/**
 * A pair that does not load is retried this often, and logged only once it
 * has failed for FAIL_GRACE_MS: a certificate written before its key is a
 * mismatch for a moment, not an error.
 */
const RETRY_MS = 250
const FAIL_GRACE_MS = 1500

/** One certificate and key as loaded: the bytes (to see a change) and the context built from them. */
interface Pair {
  readonly files: CertificateFiles
  cert: Buffer
  key: Buffer
  context: SecureContext
  /** The bytes that failed last ("" when none), when they first failed, and whether that was logged. */
  failing: string
  failingSince: number
  logged: boolean
}

/**
 * The listener's certificates: the default pair and the SNI pairs, with the
 * lookup by server name the TLS handshake calls. Files are re-read when their
 * directory changes (an in-place write, a rename, or the Kubernetes `..data`
 * symlink swap that cert-manager and mounted Secrets do), on a poll, and on
 * reload. A pair that loads replaces the old one for new handshakes only:
 * open connections keep the session they negotiated. A pair that does not
 * load is logged (SLUICE_TLS_CERTIFICATE) and the old one stays.
 */
export class Certificates {
  #default: Pair
  /** Exact names, lower-case. */
  #exact = new Map<string, Pair>()
  /** `*.example.org` is kept under "example.org": a name's first label is cut and the rest looked up. */
  #wildcard = new Map<string, Pair>()
  #pairs: Pair[] = []
  #server: { setSecureContext(options: { cert: Buffer; key: Buffer }): void } | undefined
  #watchers: FSWatcher[] = []
  #poll: NodeJS.Timeout | undefined
  #settle: NodeJS.Timeout | undefined
  #checking: Promise<void> | undefined
  #again = false
  #stopped = false

  /** Loads every pair at once; any problem throws a ConfigError naming its key path. */
  constructor(
    settings: TlsSettings,
    readonly log: Logger,
  ) {
    const problems: Problem[] = []
    const load = (files: CertificateFiles, path: string): Pair | undefined => {
      try {
        return loadedPair(files, readFileSync(files.cert), readFileSync(files.key))
      } catch (err) {
        problems.push({ path, message: describeCause(err) })
        return undefined
      }
    }
    const def = load(settings, 'listen.tls.cert')
    const sni = settings.sni.map((e, i) => ({ entry: e, pair: load(e, `listen.tls.sni.${i}.cert`) }))
    if (problems.length > 0 || def === undefined) throw new ConfigError(problems)
    this.#default = def
    this.#index(sni.map(({ entry, pair }) => ({ names: entry.names, pair: pair! })))
  }

  /** Options for the TLS server: the default pair, the SNI lookup, TLS 1.2 and later. */
  serverOptions(): { cert: Buffer; key: Buffer; minVersion: 'TLSv1.2'; SNICallback: SniCallback } {
    return { cert: this.#default.cert, key: this.#default.key, minVersion: MIN_TLS_VERSION, SNICallback: this.#sni }
  }

  /** The server whose default context follows the default pair. */
  bind(server: { setSecureContext(options: { cert: Buffer; key: Buffer }): void }): void {
    this.#server = server
  }

  /** The context for a server name; undefined: the default pair (the server's own context). */
  contextFor(servername: string): SecureContext | undefined {
    if (this.#exact.size === 0 && this.#wildcard.size === 0) return undefined
    const name = servername.toLowerCase()
    const exact = this.#exact.get(name)
    if (exact !== undefined) return exact.context
    const dot = name.indexOf('.')
    return dot > 0 ? this.#wildcard.get(name.slice(dot + 1))?.context : undefined
  }

  readonly #sni: SniCallback = (servername, cb) => cb(null, this.contextFor(servername))

  /** Starts following the files: a watch on each directory and the poll. */
  watch(): void {
    if (this.#stopped) return
    for (const w of this.#watchers) w.close()
    this.#watchers = []
    const dirs = new Set<string>()
    for (const p of this.#pairs) {
      dirs.add(dirname(p.files.cert))
      dirs.add(dirname(p.files.key))
    }
    for (const dir of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => this.#changed())
        w.on('error', (err) => this.log.warn({ err, dir }, 'certificate directory watch failed; the poll goes on'))
        this.#watchers.push(w)
      } catch (err) {
        this.log.warn({ err, dir }, 'cannot watch the certificate directory; the poll goes on')
      }
    }
    if (this.#poll === undefined) {
      this.#poll = setInterval(() => void this.check(), POLL_MS)
      this.#poll.unref()
    }
  }

  stop(): void {
    this.#stopped = true
    for (const w of this.#watchers) w.close()
    this.#watchers = []
    clearInterval(this.#poll)
    clearTimeout(this.#settle)
    this.#poll = this.#settle = undefined
  }

  /**
   * On reload: the file names may have changed. A pair whose files are new
   * must load, or its entry is left out (the default keeps its old pair); a
   * pair whose files stay is re-read like on a change.
   */
  async reload(settings: TlsSettings): Promise<void> {
    const old = new Map(this.#pairs.map((p) => [`${p.files.cert}\0${p.files.key}`, p]))
    const take = async (files: CertificateFiles): Promise<Pair | undefined> => {
      const known = old.get(`${files.cert}\0${files.key}`)
      if (known !== undefined) return known
      try {
        return loadedPair(files, await readFile(files.cert), await readFile(files.key))
      } catch (err) {
        this.log.error(
          { code: 'SLUICE_TLS_CERTIFICATE', cert: files.cert, key: files.key, detail: describeCause(err) },
          'new certificate pair does not load; left out',
        )
        return undefined
      }
    }
    const def = (await take(settings)) ?? this.#default
    const sni: { names: readonly string[]; pair: Pair }[] = []
    for (const e of settings.sni) {
      const pair = await take(e)
      if (pair !== undefined) sni.push({ names: e.names, pair })
    }
    if (def !== this.#default) this.#useDefault(def)
    this.#index(sni)
    this.watch()
    await this.check()
  }

  /** Re-reads every file; a pair whose bytes changed and load replaces the old one. */
  check(): Promise<void> {
    if (this.#checking !== undefined) {
      this.#again = true
      return this.#checking
    }
    this.#checking = (async () => {
      do {
        this.#again = false
        let retry = false
        for (const pair of this.#pairs) if (await this.#recheck(pair)) retry = true
        if (retry && !this.#stopped) this.#later(RETRY_MS)
      } while (this.#again)
    })().finally(() => {
      this.#checking = undefined
    })
    return this.#checking
  }

  /** True when the pair on disk differs and does not load (yet). */
  async #recheck(pair: Pair): Promise<boolean> {
    let cert: Buffer
    let key: Buffer
    try {
      ;[cert, key] = await Promise.all([readFile(pair.files.cert), readFile(pair.files.key)])
    } catch (err) {
      return this.#failed(pair, `read:${describeCause(err)}`, describeCause(err))
    }
    if (cert.equals(pair.cert) && key.equals(pair.key)) {
      pair.failing = ''
      return false
    }
    let context: SecureContext
    try {
      context = createSecureContext({ cert, key, minVersion: MIN_TLS_VERSION })
    } catch (err) {
      return this.#failed(pair, `${cert.toString('base64')}\0${key.toString('base64')}`, describeCause(err))
    }
    pair.cert = cert
    pair.key = key
    pair.context = context
    pair.failing = ''
    pair.logged = false
    if (pair === this.#default) this.#server?.setSecureContext({ cert, key })
    this.log.info({ cert: pair.files.cert, ...certificateFacts(cert) }, 'certificate reloaded: new handshakes use it')
    return false
  }

  #failed(pair: Pair, what: string, detail: string): boolean {
    const now = performance.now()
    if (pair.failing !== what) {
      pair.failing = what
      pair.failingSince = now
      pair.logged = false
    }
    if (!pair.logged && now - pair.failingSince >= FAIL_GRACE_MS) {
      pair.logged = true
      const err = new TlsCertificateError(pair.files.cert, pair.files.key, detail)
      this.log.error({ code: err.code, cert: pair.files.cert, key: pair.files.key, detail }, err.message + '; the old certificate stays')
    }
    return !pair.logged
  }

  #changed(): void {
    if (this.#stopped) return
    this.#later(SETTLE_MS)
  }

  #later(ms: number): void {
    clearTimeout(this.#settle)
    this.#settle = setTimeout(() => void this.check(), ms)
    this.#settle.unref()
  }

  #useDefault(pair: Pair): void {
    this.#default = pair
    this.#server?.setSecureContext({ cert: pair.cert, key: pair.key })
  }

  #index(sni: readonly { names: readonly string[]; pair: Pair }[]): void {
    this.#exact = new Map()
    this.#wildcard = new Map()
    for (const { names, pair } of sni)
      for (const raw of names) {
        const name = raw.toLowerCase()
        if (name.startsWith('*.')) this.#wildcard.set(name.slice(2), pair)
        else this.#exact.set(name, pair)
      }
    this.#pairs = [this.#default, ...new Set(sni.map((s) => s.pair))]
  }
}

type SniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void

function loadedPair(files: CertificateFiles, cert: Buffer, key: Buffer): Pair {
  const context = createSecureContext({ cert, key, minVersion: MIN_TLS_VERSION })
  return { files, cert, key, context, failing: '', failingSince: 0, logged: false }
}

/** What a log line says about a certificate: its subject and when it expires. */
function certificateFacts(cert: Buffer): { subject?: string; validTo?: string } {
  try {
    const x = new X509Certificate(cert)
    return { subject: x.subject, validTo: x.validTo }
  } catch {
    return {}
  }
}
