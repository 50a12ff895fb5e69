import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface IssuedCertificate {
  /** PEM file: the leaf, then the intermediate that signed it (a chain, as CAs deliver them). */
  cert: string
  key: string
  /** The leaf's SHA-256 fingerprint as Node prints it (`getPeerCertificate().fingerprint256`). */
  fingerprint: string
}

export interface TestCa {
  /** Temp directory holding every file; removed by close(). */
  readonly dir: string
  /** The root's PEM text, what a client trusts. */
  readonly rootPem: string
  readonly rootFile: string
  /** A server certificate for these DNS names (and 127.0.0.1), signed by the intermediate; files under `dir` (or `into`). */
  issue(names: string[], into?: string): Promise<IssuedCertificate>
  close(): Promise<void>
}

async function openssl(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run('openssl', args, { cwd })
    return stdout
  } catch (err) {
    // No openssl means no TLS tests: fail loudly, never skip.
    throw new Error(`openssl ${args.join(' ')} failed: ${(err as Error).message}`, { cause: err })
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

/**
 * A throwaway CA made with the openssl CLI in a temp dir: a root, an
 * intermediate, and server certificates on demand (EC P-256, valid two days).
 */
export async function testCa(): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-tls-'))
  await openssl(['req', '-x509', ...EC, '-keyout', 'root.key', '-out', 'root.crt', '-days', '2', '-subj', '/CN=sluice test root'], dir)
  await writeFile(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n')
  await openssl(['req', ...EC, '-keyout', 'inter.key', '-out', 'inter.csr', '-subj', '/CN=sluice test intermediate'], dir)
  await openssl(
    ['x509', '-req', '-in', 'inter.csr', '-CA', 'root.crt', '-CAkey', 'root.key', '-set_serial', '1', '-days', '2', '-extfile', 'ca.ext', '-out', 'inter.crt'],
    dir,
  )
  const rootFile = join(dir, 'root.crt')
  const rootPem = await readFile(rootFile, 'utf8')
  const inter = await readFile(join(dir, 'inter.crt'), 'utf8')
  return {
    dir,
    rootPem,
    rootFile,
    async issue(names, into = dir) {
      const base = `leaf-${randomBytes(6).toString('hex')}`
      const san = [...names.map((n) => `DNS:${n}`), 'IP:127.0.0.1'].join(',')
      await writeFile(
        join(dir, `${base}.ext`),
        `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`,
      )
      await openssl(['req', ...EC, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0] ?? 'localhost'}`], dir)
      const serial = `0x${randomBytes(8).toString('hex')}`
      await openssl(
        ['x509', '-req', '-in', `${base}.csr`, '-CA', 'inter.crt', '-CAkey', 'inter.key', '-set_serial', serial, '-days', '2', '-extfile', `${base}.ext`, '-out', `${base}.crt`],
        dir,
      )
      const leaf = await readFile(join(dir, `${base}.crt`), 'utf8')
      const fp = await openssl(['x509', '-in', `${base}.crt`, '-noout', '-fingerprint', '-sha256'], dir)
      const cert = join(into, `${base}.crt`)
      const key = join(into, `${base}.key`)
      await writeFile(cert, leaf + inter)
      if (into !== dir) await writeFile(key, await readFile(join(dir, `${base}.key`)))
      return { cert, key, fingerprint: fp.trim().split('=')[1]! }
    },
    async close() {
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** The certificate a fresh TLS handshake with this server name gets (its SHA-256 fingerprint). */
export function handshake(port: number, servername: string, ca: string): Promise<{ fingerprint: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    // The chain is verified against the test root; which certificate came is what the caller checks.
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ca, ALPNProtocols: ['h2', 'http/1.1'], checkServerIdentity: () => undefined })
    s.once('secureConnect', () => {
      const fingerprint = s.getPeerCertificate().fingerprint256
      const alpn = s.alpnProtocol
      s.destroy()
      resolve({ fingerprint, alpn })
    })
    s.once('error', reject)
  })
}

/**
 * A proxy's `listen` section serving TLS for proxy.test with a certificate
 * from `ca`, to spread into its config; nothing (cleartext) without one.
 */
export async function proxyTlsListen(ca: TestCa | undefined): Promise<Record<string, unknown>> {
  if (ca === undefined) return {}
  const leaf = await ca.issue(['proxy.test'])
  return { listen: { host: '127.0.0.1', port: 0, tls: { cert: leaf.cert, key: leaf.key } } }
}
