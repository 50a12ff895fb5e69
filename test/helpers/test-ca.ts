import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCa {
  readonly dir: string
  /** The CA's certificate file (PEM): what `tls.ca` names. */
  readonly caFile: string
  /** A leaf for `localhost`, `*.test.internal` and 127.0.0.1, signed by the CA (PEM text). */
  readonly cert: string
  readonly key: string
  /** Another CA's certificate file, which did not sign the leaf. */
  readonly otherCaFile: string
  close(): void
}

/**
 * A throwaway CA made with the real `openssl` in a temp dir, and one server
 * certificate it signed. A missing openssl fails the test (it never skips).
 */
export function makeTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ca-'))
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  for (const name of ['ca', 'other-ca']) {
    run(
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', `/CN=sluice test ${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`,
    )
  }
  writeFileSync(
    join(dir, 'leaf.ext'),
    'subjectAltName=DNS:localhost,DNS:*.test.internal,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  )
  run(
    'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-subj', '/CN=localhost', '-keyout', 'leaf.key', '-out', 'leaf.csr',
  )
  run(
    'x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'leaf.ext', '-out', 'leaf.crt',
  )
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    cert: readFileSync(join(dir, 'leaf.crt'), 'utf8'),
    key: readFileSync(join(dir, 'leaf.key'), 'utf8'),
    otherCaFile: join(dir, 'other-ca.crt'),
    close: () => rmSync(dir, { recursive: true, force: true }),
  }
}
