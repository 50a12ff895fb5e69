import { mkdir, rename, symlink, writeFile, copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { buildConfig } from '../../src/config/load.js'
import { type Running, runSluice } from '../../src/lifecycle/run.js'
import { curl, h2Request, h2Session, peerFingerprint } from '../helpers/h2-client.js'
import { admin, TEST_TOKEN } from '../helpers/proxy.js'
import { handshake, testCa, type IssuedCertificate, type TestCa } from '../helpers/tls-certs.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** A proxy whose log lines are kept (JSON objects), started from a config file when `source` is given. */
async function proxyWithLog(listen: Record<string, unknown>, upstream: string, source?: string) {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    },
  })
  const config = buildConfig(
    {
      listen: { host: '127.0.0.1', port: 0, http2: true, ...listen },
      admin: { host: '127.0.0.1', port: 0, token: TEST_TOKEN },
      versions: { blue: { instances: [{ url: upstream }] } },
    },
    source,
  )
  const running = await runSluice(config, { log: pino({ level: 'info' }, sink) })
  return { running, lines, adminUrl: `http://127.0.0.1:${running.adminPort}` }
}

/**
 * Lays out a certificate the way a Kubernetes Secret volume does:
 * `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>/`; rotating swaps
 * the `..data` link in one rename.
 */
async function secretVolume(dir: string, first: IssuedCertificate): Promise<{ rotate(next: IssuedCertificate | { cert: string; key: string }): Promise<void> }> {
  let n = 0
  const publish = async (pair: { cert: string; key: string }) => {
    const data = join(dir, `..2026_12_07_${n++}`)
    await mkdir(data)
    await copyFile(pair.cert, join(data, 'tls.crt'))
    await copyFile(pair.key, join(data, 'tls.key'))
    await symlink(data, join(dir, '..data_tmp'))
    await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  }
  await mkdir(dir, { recursive: true })
  await publish(first)
  await symlink(join('..data', 'tls.crt'), join(dir, 'tls.crt'))
  await symlink(join('..data', 'tls.key'), join(dir, 'tls.key'))
  return { rotate: publish }
}

describe('certificates: SNI, rotation without dropping a connection (README "TLS and HTTP/2")', () => {
  let ca: TestCa
  let app: TestUpstream
  let def: IssuedCertificate
  let exact: IssuedCertificate
  let wild: IssuedCertificate
  const running: Running[] = []

  beforeAll(async () => {
    ca = await testCa()
    app = await startUpstream('blue')
    def = await ca.issue(['proxy.test'])
    exact = await ca.issue(['api.example.com'])
    wild = await ca.issue(['*.example.org'])
  })
  afterEach(async () => {
    for (const r of running.splice(0)) await r.stop()
  })
  afterAll(async () => {
    await app?.close()
    await ca?.close()
  })

  it('serves the SNI certificate by exact and wildcard name (one label), and the default for any other name', async () => {
    const { running: p } = await proxyWithLog(
      { tls: { cert: def.cert, key: def.key, sni: [{ names: ['api.example.com'], cert: exact.cert, key: exact.key }, { names: ['*.example.org'], cert: wild.cert, key: wild.key }] } },
      app.url,
    )
    running.push(p)
    const fp = (name: string) => handshake(p.port, name, ca.rootPem).then((h) => h.fingerprint)
    expect(await fp('api.example.com')).toBe(exact.fingerprint)
    expect(await fp('API.Example.com')).toBe(exact.fingerprint)
    expect(await fp('a.example.org')).toBe(wild.fingerprint)
    expect(await fp('proxy.test')).toBe(def.fingerprint)
    expect(await fp('other.test')).toBe(def.fingerprint)
    // '*.example.org' covers exactly one label: neither the bare name nor two labels.
    expect(await fp('b.a.example.org')).toBe(def.fingerprint)
    expect(await fp('example.org')).toBe(def.fingerprint)
    // ALPN still offers h2 with an SNI certificate, and a request goes through.
    expect((await handshake(p.port, 'api.example.com', ca.rootPem)).alpn).toBe('h2')
    const session = await h2Session(`https://127.0.0.1:${p.port}`, { ca: ca.rootPem, servername: 'api.example.com' })
    try {
      expect((await h2Request(session, '/sni')).status).toBe(200)
    } finally {
      session.close()
    }
  })

  it('a Secret-style symlink swap: new handshakes get the new certificate, an open h2 session keeps answering, a bad file keeps the old one', async () => {
    const dir = join(ca.dir, 'secret')
    const vol = await secretVolume(dir, def)
    const { running: p, lines } = await proxyWithLog({ tls: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') } }, app.url)
    running.push(p)
    const session = await h2Session(`https://127.0.0.1:${p.port}`, { ca: ca.rootPem, servername: 'proxy.test' })
    try {
      expect(peerFingerprint(session)).toBe(def.fingerprint)
      expect((await h2Request(session, '/before')).status).toBe(200)

      const next = await ca.issue(['proxy.test'])
      await vol.rotate(next)
      await expect
        .poll(() => handshake(p.port, 'proxy.test', ca.rootPem).then((h) => h.fingerprint), { timeout: 5000 })
        .toBe(next.fingerprint)
      // The session negotiated before the rotation is the same one and still gets answers.
      expect(session.closed || session.destroyed).toBe(false)
      expect(peerFingerprint(session)).toBe(def.fingerprint)
      expect((await h2Request(session, '/after')).status).toBe(200)

      // A pair whose key does not match its certificate: logged, and the certificate in use stays.
      const bad = join(ca.dir, 'bad')
      await mkdir(bad)
      await copyFile(def.cert, join(bad, 'c.pem'))
      await copyFile(next.key, join(bad, 'k.pem'))
      await vol.rotate({ cert: join(bad, 'c.pem'), key: join(bad, 'k.pem') })
      await vi.waitFor(() => expect(lines.some((l) => l.code === 'SLUICE_TLS_CERTIFICATE' && l.level === 50)).toBe(true), { timeout: 5000 })
      expect((await handshake(p.port, 'proxy.test', ca.rootPem)).fingerprint).toBe(next.fingerprint)
      expect((await h2Request(session, '/still')).status).toBe(200)

      // Garbage in place of the certificate: the same.
      await writeFile(join(bad, 'garbage.pem'), 'not a certificate\n')
      await vol.rotate({ cert: join(bad, 'garbage.pem'), key: next.key })
      await vi.waitFor(() => expect(lines.filter((l) => l.code === 'SLUICE_TLS_CERTIFICATE').length).toBe(2), { timeout: 5000 })
      expect((await handshake(p.port, 'proxy.test', ca.rootPem)).fingerprint).toBe(next.fingerprint)

      // A good pair after the bad ones is taken.
      const third = await ca.issue(['proxy.test'])
      await vol.rotate(third)
      await expect
        .poll(() => handshake(p.port, 'proxy.test', ca.rootPem).then((h) => h.fingerprint), { timeout: 5000 })
        .toBe(third.fingerprint)
      expect((await h2Request(session, '/last')).status).toBe(200)
    } finally {
      session.close()
    }
  })

  it('an in-place write of an SNI pair (certificate first, key after) is taken once both match, with no error logged', async () => {
    const dir = join(ca.dir, 'inplace')
    await mkdir(dir)
    await copyFile(exact.cert, join(dir, 'api.crt'))
    await copyFile(exact.key, join(dir, 'api.key'))
    const { running: p, lines } = await proxyWithLog(
      { tls: { cert: def.cert, key: def.key, sni: [{ names: ['api.example.com'], cert: join(dir, 'api.crt'), key: join(dir, 'api.key') }] } },
      app.url,
    )
    running.push(p)
    expect((await handshake(p.port, 'api.example.com', ca.rootPem)).fingerprint).toBe(exact.fingerprint)
    const next = await ca.issue(['api.example.com'])
    await copyFile(next.cert, join(dir, 'api.crt'))
    await copyFile(next.key, join(dir, 'api.key'))
    await expect
      .poll(() => handshake(p.port, 'api.example.com', ca.rootPem).then((h) => h.fingerprint), { timeout: 5000 })
      .toBe(next.fingerprint)
    expect(lines.filter((l) => l.code === 'SLUICE_TLS_CERTIFICATE')).toEqual([])
  })

  it('with http2 off (a node:https listener): HTTP/1.1 only by ALPN, and the default pair rotates', async () => {
    const dir = join(ca.dir, 'https-only')
    await mkdir(dir)
    await copyFile(def.cert, join(dir, 'tls.crt'))
    await copyFile(def.key, join(dir, 'tls.key'))
    const { running: p } = await proxyWithLog({ http2: false, tls: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') } }, app.url)
    running.push(p)
    expect((await handshake(p.port, 'proxy.test', ca.rootPem)).alpn).toBe('http/1.1')
    const r = await curl(['--http2', '--cacert', ca.rootFile, '--resolve', `proxy.test:${p.port}:127.0.0.1`, `https://proxy.test:${p.port}/x`])
    expect(r.version).toBe('1.1')
    expect(r.status).toBe(200)
    const next = await ca.issue(['proxy.test'])
    await copyFile(next.cert, join(dir, 'tls.crt'))
    await copyFile(next.key, join(dir, 'tls.key'))
    await expect
      .poll(() => handshake(p.port, 'proxy.test', ca.rootPem).then((h) => h.fingerprint), { timeout: 5000 })
      .toBe(next.fingerprint)
  })

  it('POST /v1/reload applies a changed certificate list (a new SNI name)', async () => {
    const file = join(ca.dir, 'sluice.yaml')
    const write = (sni: string) =>
      writeFile(
        file,
        `listen: { host: 127.0.0.1, port: 0, http2: true, tls: { cert: ${def.cert}, key: ${def.key}${sni} } }\n` +
          `admin: { host: 127.0.0.1, port: 0, token: ${TEST_TOKEN} }\nversions: { blue: { instances: [ { url: "${app.url}" } ] } }\n`,
      )
    await write('')
    const { running: p, adminUrl } = await proxyWithLog({ tls: { cert: def.cert, key: def.key } }, app.url, file)
    running.push(p)
    expect((await handshake(p.port, 'api.example.com', ca.rootPem)).fingerprint).toBe(def.fingerprint)
    await write(`, sni: [ { names: [api.example.com], cert: ${exact.cert}, key: ${exact.key} } ]`)
    expect((await admin({ adminUrl }, 'POST', '/v1/reload')).status).toBe(200)
    expect((await handshake(p.port, 'api.example.com', ca.rootPem)).fingerprint).toBe(exact.fingerprint)
  })

  it('a certificate that does not load stops the start with the key path', () => {
    expect(() =>
      buildConfig({ listen: { tls: { cert: '/nonexistent/c.pem', key: '/nonexistent/k.pem' } }, versions: { blue: { instances: [{ url: app.url }] } } }, undefined),
    ).not.toThrow()
    return expect(
      runSluice(
        buildConfig(
          {
            listen: { host: '127.0.0.1', port: 0, tls: { cert: '/nonexistent/c.pem', key: def.key } },
            admin: { host: '127.0.0.1', port: 0 },
            versions: { blue: { instances: [{ url: app.url }] } },
          },
          undefined,
        ),
        { log: pino({ level: 'silent' }) },
      ),
    ).rejects.toMatchObject({ code: 'SLUICE_CONFIG_INVALID', problems: [{ path: 'listen.tls.cert' }] })
  })
})
