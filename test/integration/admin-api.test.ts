import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { steadyLoad } from '../helpers/load.js'
import { admin, startProxy, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

function yamlConfig(instances: Record<string, string[]>, weights: Record<string, number>): string {
  const versions = Object.entries(instances)
    .map(([v, urls]) => `  ${v}:\n    instances:\n${urls.map((u) => `      - url: ${u}`).join('\n')}`)
    .join('\n')
  return `listen: { host: 127.0.0.1, port: 0 }
admin:
  host: 127.0.0.1
  port: 0
  token: ${TEST_TOKEN}
  tokens:
    - { name: alice, token: alice-secret }
versions:
${versions}
weights: ${JSON.stringify(weights)}
log: { level: silent }
`
}

describe('admin API', () => {
  let dir: string
  let file: string
  let blue: TestUpstream
  let blue2: TestUpstream
  let green: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    blue = await startUpstream('blue')
    blue2 = await startUpstream('blue2')
    green = await startUpstream('green')
    dir = await mkdtemp(join(tmpdir(), 'sluice-admin-'))
    file = join(dir, 'sluice.yaml')
    await writeFile(file, yamlConfig({ blue: [blue.url], green: [green.url] }, { blue: 100 }))
    proxy = await startProxy(
      {
        admin: { host: '127.0.0.1', port: 0, token: TEST_TOKEN, tokens: [{ name: 'alice', token: 'alice-secret' }] },
        versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
        weights: { blue: 100 },
      },
      { source: file },
    )
  })
  afterAll(async () => {
    await proxy.stop()
    await Promise.all([blue.close(), blue2.close(), green.close()])
    await rm(dir, { recursive: true, force: true })
  })

  it('answers liveness and readiness without a token', async () => {
    expect((await fetch(`${proxy.adminUrl}/healthz`)).status).toBe(200)
    expect((await fetch(`${proxy.adminUrl}/readyz`)).status).toBe(200)
  })

  it('refuses /v1/* without the token or with a wrong one, with the error body', async () => {
    const none = await admin(proxy, 'GET', '/v1/state', undefined, null)
    expect(none.status).toBe(401)
    expect(none.body.error.code).toBe('SLUICE_UNAUTHORIZED')
    const wrong = await admin(proxy, 'GET', '/v1/state', undefined, 'nope')
    expect(wrong.status).toBe(401)
    expect((await admin(proxy, 'GET', '/v1/state')).status).toBe(200)
    expect((await admin(proxy, 'GET', '/v1/state', undefined, 'alice-secret')).status).toBe(200)
  })

  it('answers unknown routes 404, wrong methods 405, non-JSON 415, big bodies 413, bad JSON 400', async () => {
    const nf = await admin(proxy, 'GET', '/v1/nope')
    expect(nf.status).toBe(404)
    expect(nf.body.error.code).toBe('SLUICE_NOT_FOUND')
    const res405 = await fetch(`${proxy.adminUrl}/v1/weights`, { method: 'DELETE', headers: { authorization: `Bearer ${TEST_TOKEN}` } })
    expect(res405.status).toBe(405)
    expect(res405.headers.get('allow')).toContain('PUT')
    expect(((await res405.json()) as any).error.code).toBe('SLUICE_METHOD_NOT_ALLOWED')
    const r415 = await fetch(`${proxy.adminUrl}/v1/weights`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'text/plain' },
      body: 'blue=100',
    })
    expect(r415.status).toBe(415)
    const r413 = await fetch(`${proxy.adminUrl}/v1/weights`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ pad: 'x'.repeat(70 * 1024) }),
    })
    expect(r413.status).toBe(413)
    const r400 = await fetch(`${proxy.adminUrl}/v1/weights`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
      body: '{"blue": 10,',
    })
    expect(r400.status).toBe(400)
    expect(((await r400.json()) as any).error.code).toBe('SLUICE_INVALID_JSON')
  })

  it('refuses invalid weights with the path at fault and changes nothing', async () => {
    const before = (await admin(proxy, 'GET', '/v1/state')).body
    const unknown = await admin(proxy, 'PUT', '/v1/weights', { blue: 50, purple: 50 })
    expect(unknown.status).toBe(400)
    expect(unknown.body.error).toMatchObject({ code: 'SLUICE_INVALID_WEIGHTS', path: 'purple' })
    const sum = await admin(proxy, 'PUT', '/v1/weights', { blue: 50, green: 40 })
    expect(sum.status).toBe(400)
    expect(sum.body.error.message).toContain('sum to 100')
    const frac = await admin(proxy, 'PUT', '/v1/weights', { blue: 50.5, green: 49.5 })
    expect(frac.status).toBe(400)
    const after = (await admin(proxy, 'GET', '/v1/state')).body
    expect(after.weights).toEqual(before.weights)
    expect(after.revision).toBe(before.revision)
  })

  it('applies weights atomically: once PUT answers, every new request follows them', async () => {
    for (const [b, g] of [
      [0, 100],
      [100, 0],
      [0, 100],
      [100, 0],
    ] as const) {
      expect((await admin(proxy, 'PUT', '/v1/weights', { blue: b, green: g })).status).toBe(200)
      const want = b === 100 ? 'blue' : 'green'
      const seen = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const res = await fetch(`${proxy.url}/`)
          await res.text()
          return res.headers.get('x-upstream')
        }),
      )
      expect(new Set(seen)).toEqual(new Set([want]))
    }
  })

  it('drains and undrains by version and url, 404 for unknown targets, all audited with the actor', async () => {
    const unknownV = await admin(proxy, 'POST', '/v1/drain', { version: 'purple' })
    expect(unknownV.status).toBe(404)
    expect(unknownV.body.error.code).toBe('SLUICE_UNKNOWN_TARGET')
    expect((await admin(proxy, 'POST', '/v1/drain', { url: 'http://127.0.0.1:1' })).status).toBe(404)
    expect((await admin(proxy, 'POST', '/v1/drain', { nope: 1 })).status).toBe(400)

    const d = await admin(proxy, 'POST', '/v1/drain', { url: green.url }, 'alice-secret')
    expect(d.status).toBe(200)
    expect(d.body.versions.green.instances[0].draining).toBe(true)
    const u = await admin(proxy, 'POST', '/v1/undrain', { version: 'green' }, 'alice-secret')
    expect(u.status).toBe(200)
    const u2 = await admin(proxy, 'POST', '/v1/undrain', { url: green.url })
    expect(u2.body.versions.green.instances[0].draining).toBe(false)

    const audit = (await admin(proxy, 'GET', '/v1/audit')).body as any[]
    const drain = audit.find((e) => e.action === 'drain')
    expect(drain).toMatchObject({ source: 'admin', actor: 'alice', before: { url: green.url, draining: false } })
    expect(drain.after).toMatchObject({ draining: true })
    const weights = audit.filter((e) => e.action === 'weights')
    expect(weights.length).toBeGreaterThanOrEqual(4)
    expect(weights.at(-1)).toMatchObject({ source: 'admin', actor: 'admin', after: { blue: 100, green: 0 } })
    for (const e of audit) expect(Object.keys(e)).toEqual(expect.arrayContaining(['at', 'action', 'source', 'actor', 'before', 'after', 'reason']))
  })

  it('reload keeps the old config on a bad file and answers 400 with every problem', async () => {
    await writeFile(file, 'versions:\n  blue:\n    instances: []\nweights: { blue: 90 }\nbogus: 1\n')
    const bad = await admin(proxy, 'POST', '/v1/reload')
    expect(bad.status).toBe(400)
    expect(bad.body.error.code).toBe('SLUICE_CONFIG_INVALID')
    const paths = (bad.body.error.problems as { path: string }[]).map((p) => p.path)
    expect(paths).toEqual(expect.arrayContaining(['bogus', 'versions.blue.instances', 'weights']))
    const res = await fetch(`${proxy.url}/`)
    expect(res.status).toBe(200)
    await res.text()
  })

  it('reload adds and removes instances under load without a failed request', async () => {
    expect((await admin(proxy, 'PUT', '/v1/weights', { blue: 100, green: 0 })).status).toBe(200)
    const load = steadyLoad({ url: proxy.url, concurrency: 6 })
    await expect.poll(() => load.result.ok, { message: 'load to run' }).toBeGreaterThan(100)
    await writeFile(file, yamlConfig({ blue: [blue.url, blue2.url], green: [green.url] }, { blue: 100 }))
    const add = await admin(proxy, 'POST', '/v1/reload')
    expect(add.status).toBe(200)
    expect(add.body.versions.blue.instances.map((i: any) => i.url)).toEqual([blue.url, blue2.url])
    await expect.poll(() => blue2.hits, { message: 'the new instance to take traffic' }).toBeGreaterThan(20)
    await writeFile(file, yamlConfig({ blue: [blue2.url], green: [green.url] }, { blue: 100 }))
    const remove = await admin(proxy, 'POST', '/v1/reload')
    expect(remove.status).toBe(200)
    const hitsAtRemoval = blue.hits
    await expect.poll(() => load.result.ok, { message: 'more load' }).toBeGreaterThan(600)
    const r = await load.stop()
    expect(r.failures).toEqual([])
    expect(r.failed).toBe(0)
    // At most the requests in flight at the moment of removal reach the removed instance.
    expect(blue.hits - hitsAtRemoval).toBeLessThanOrEqual(6)
    const audit = (await admin(proxy, 'GET', '/v1/audit')).body as any[]
    expect(audit.filter((e) => e.action === 'reload' && e.source === 'reload').length).toBe(2)
  })

  it('turns /readyz to 503 as soon as a graceful stop begins', async () => {
    const u = await startUpstream('solo', (req, res) => {
      req.resume()
      setTimeout(() => res.end('slow'), 400)
    })
    const p = await startProxy({ versions: { solo: { instances: [{ url: u.url }] } } })
    const slow = fetch(`${p.url}/`).then((r) => r.text())
    await expect.poll(() => u.hits, { message: 'the slow request to arrive' }).toBe(1)
    const stopping = p.stop()
    // The admin listener stays up while the public one drains, so the answer is there to read.
    const ready = await fetch(`${p.adminUrl}/readyz`)
    expect(ready.status).toBe(503)
    expect(await slow).toBe('slow')
    await stopping
    await u.close()
  })
})
