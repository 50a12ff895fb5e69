import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { testCa } from '../helpers/tls-certs.js'
import { startTlsUpstream, type TlsUpstream } from '../helpers/tls-upstream.js'

/** README "Upstream TLS and HTTP/2": https, h2 and h2c instances, verified or not, probed the way they are spoken to. */
/** A throwaway CA, another one that signed nothing, and a leaf for localhost, *.test.internal and 127.0.0.1. */
async function certificates() {
  const ca = await testCa()
  const other = await testCa()
  const leaf = await ca.issue(['localhost', '*.test.internal'])
  return {
    caFile: ca.rootFile,
    otherCaFile: other.rootFile,
    dir: ca.dir,
    tls: { cert: await readFile(leaf.cert, 'utf8'), key: await readFile(leaf.key, 'utf8') },
    close: () => Promise.all([ca.close(), other.close()]),
  }
}

describe('upstream TLS and HTTP/2', () => {
  let ca: Awaited<ReturnType<typeof certificates>>
  const up = {} as Record<"https" | "h2" | "h2c" | "badca" | "badh2" | "noverify" | "named", TlsUpstream>
  let proxy: TestProxy
  /** The same versions with active probes. */
  let probing: TestProxy

  /** One request pinned to a version by the override header; the parsed answer. */
  async function to(version: string, init: { method?: string; body?: string } = {}) {
    const res = await request(`${proxy.url}/p?v=${version}`, {
      method: (init.method ?? 'GET') as 'GET',
      headers: { 'x-version': version },
      ...(init.body !== undefined ? { body: init.body } : {}),
    })
    const text = await res.body.text()
    return { status: res.statusCode, headers: res.headers, body: JSON.parse(text) as Record<string, any> }
  }

  beforeAll(async () => {
    ca = await certificates()
    const tls = ca.tls
    up.https = await startTlsUpstream('https', 'https', tls)
    up.h2 = await startTlsUpstream('h2', 'h2', tls)
    up.h2c = await startTlsUpstream('h2c', 'h2c')
    up.badca = await startTlsUpstream('badca', 'https', tls)
    up.badh2 = await startTlsUpstream('badh2', 'h2', tls)
    up.noverify = await startTlsUpstream('noverify', 'h2', tls)
    up.named = await startTlsUpstream('named', 'h2', tls)
    const versions = {
      https: { instances: [{ url: up.https.url }], tls: { ca: ca.caFile } },
      h2: { instances: [{ url: up.h2.url }], protocol: 'h2', tls: { ca: ca.caFile } },
      h2c: { instances: [{ url: up.h2c.url }], protocol: 'h2c' },
      badca: { instances: [{ url: up.badca.url }], tls: { ca: ca.otherCaFile } },
      badh2: { instances: [{ url: up.badh2.url }], protocol: 'h2', tls: { ca: ca.otherCaFile } },
      noverify: { instances: [{ url: up.noverify.url }], protocol: 'h2', tls: { ca: ca.otherCaFile, verify: false } },
      named: { instances: [{ url: up.named.url }], protocol: 'h2', tls: { ca: ca.caFile, servername: 'api.test.internal' } },
    }
    proxy = await startProxy({
      versions,
      weights: { https: 100 },
      overrides: Object.keys(versions).map((name) => ({ match: { header: 'x-version', value: name }, version: name })),
      retries: { attempts: 0 },
    })
    probing = await startProxy({
      versions,
      weights: { https: 100 },
      health: { intervalMs: 200, timeoutMs: 150, healthyThreshold: 1, unhealthyThreshold: 1 },
    })
  })
  afterAll(async () => {
    await proxy?.stop()
    await probing?.stop()
    for (const u of Object.values(up)) await u.close()
    await ca?.close()
  })

  it('reaches an https:// instance over HTTP/1.1, verified against tls.ca', async () => {
    const r = await to('https')
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ name: 'https', httpVersion: '1.1', path: '/p?v=https' })
  })

  it('speaks HTTP/2 to an h2 instance (ALPN) and to an h2c one (prior knowledge), request bodies included', async () => {
    expect((await to('h2')).body).toMatchObject({ name: 'h2', httpVersion: '2.0' })
    const c = await to('h2c', { method: 'POST', body: 'x'.repeat(100_000) })
    expect(c.status).toBe(200)
    expect(c.body).toMatchObject({ name: 'h2c', httpVersion: '2.0', method: 'POST', received: 100_000 })
    // Pseudo-headers are the upstream's :authority and :path, never copied as headers; the Host the client sent is :authority.
    const seen = up.h2c.seen.find((s) => s.path === '/p?v=h2c')!
    expect(seen.headers[':authority']).toBe(new URL(proxy.url).host)
    expect(seen.headers['x-forwarded-proto']).toBe('http')
  })

  it('an instance whose certificate the CA did not sign: 502 SLUICE_UPSTREAM_TLS, and the proxy keeps serving', async () => {
    const r = await to('badca')
    expect(r.status).toBe(502)
    expect(r.body.error).toMatchObject({ code: 'SLUICE_UPSTREAM_TLS', message: "the upstream's TLS certificate was not accepted" })
    expect(typeof r.body.error.requestId).toBe('string')
    expect(up.badca.seen.filter((s) => s.path !== '/healthz')).toEqual([])
    expect((await to('https')).status).toBe(200)
    expect((await to('badca')).status).toBe(502)
    // The same over HTTP/2.
    const h2 = await to('badh2')
    expect(h2.status).toBe(502)
    expect(h2.body.error.code).toBe('SLUICE_UPSTREAM_TLS')
    expect((await to('h2')).status).toBe(200)
  })

  it('tls.verify false accepts any certificate', async () => {
    expect((await to('noverify')).body).toMatchObject({ name: 'noverify', httpVersion: '2.0' })
  })

  it('tls.servername is the name sent (SNI) and checked against the certificate', async () => {
    expect((await to('named')).body).toMatchObject({ name: 'named' })
    expect(up.named.seen.at(-1)!.servername).toBe('api.test.internal')
    // Without it, an IP address URL sends no server name.
    expect(up.h2.seen.at(-1)!.servername).toBeUndefined()
  })

  it('probes speak each version\'s protocol over its TLS: a bad certificate keeps the instance unhealthy', async () => {
    await expect
      .poll(async () => {
        const s = (await admin(probing, 'GET', '/v1/state')).body
        const health: Record<string, boolean> = {}
        for (const [name, v] of Object.entries<any>(s.versions)) health[name] = v.instances[0].healthy
        return health
      })
      .toEqual({ https: true, h2: true, h2c: true, badca: false, badh2: false, noverify: true, named: true })
    const probe = (u: TlsUpstream) => u.seen.find((s) => s.path === '/healthz')!
    expect(probe(up.h2).httpVersion).toBe('2.0')
    expect(probe(up.h2c).httpVersion).toBe('2.0')
    expect(probe(up.https).httpVersion).toBe('1.1')
    expect(probe(up.named).servername).toBe('api.test.internal')
    expect(up.badca.seen).toEqual([])
    expect(up.badh2.seen).toEqual([])
  })
})

describe('upstream TLS settings on reload', () => {
  let ca: Awaited<ReturnType<typeof certificates>>
  let up: TlsUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    ca = await certificates()
    up = await startTlsUpstream('h2', 'h2', ca.tls)
  })
  afterAll(async () => {
    await proxy?.stop()
    await up?.close()
    await ca?.close()
  })

  it('a new tls.ca or tls.verify applies to the next requests, without a restart', async () => {
    const file = join(ca.dir, 'sluice.json')
    const config = (tls: Record<string, unknown>) => ({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token: 'test-token' },
      log: { level: 'silent' },
      versions: { blue: { protocol: 'h2', instances: [{ url: up.url }], tls } },
    })
    const wrong = config({ ca: ca.otherCaFile })
    await writeFile(file, JSON.stringify(wrong))
    proxy = await startProxy(wrong, { source: file })
    const get = async () => {
      const res = await request(`${proxy.url}/r`)
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> }
    }
    expect((await get()).body.error.code).toBe('SLUICE_UPSTREAM_TLS')
    await writeFile(file, JSON.stringify(config({ ca: ca.caFile })))
    expect((await admin(proxy, 'POST', '/v1/reload')).status).toBe(200)
    expect(await get()).toMatchObject({ status: 200, body: { name: 'h2', httpVersion: '2.0' } })
    // Verification off: the unsigned certificate is taken.
    await writeFile(file, JSON.stringify(config({ ca: ca.otherCaFile, verify: false })))
    expect((await admin(proxy, 'POST', '/v1/reload')).status).toBe(200)
    expect(await get()).toMatchObject({ status: 200, body: { httpVersion: '2.0' } })
  })
})
