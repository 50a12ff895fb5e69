import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ctlInProcess } from '../helpers/cli.js'
import { steadyLoad } from '../helpers/load.js'
import { admin, startProxy, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

async function rows(p: TestProxy, version: string): Promise<{ url: string; source: string; draining: boolean }[]> {
  return (await admin(p, 'GET', '/v1/state')).body.versions[version].instances
}

async function names(p: TestProxy, n: number): Promise<Set<string>> {
  const seen = new Set<string>()
  for (let i = 0; i < n; i++) {
    const res = await request(p.url + '/')
    await res.body.dump()
    seen.add(String(res.headers['x-upstream']))
  }
  return seen
}

describe('runtime instances: POST and DELETE /v1/instances', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let extra: TestUpstream
  let proxy: TestProxy
  let dir: string
  let configFile: string

  const yaml = (weights: string) =>
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      `admin: { host: 127.0.0.1, port: 0, token: ${TEST_TOKEN} }`,
      'log: { level: silent }',
      'versions:',
      `  blue: { instances: [{ url: ${blue.url} }] }`,
      `  green: { instances: [{ url: ${green.url} }] }`,
      `weights: ${weights}`,
      'drain: { timeoutMs: 5000 }',
    ].join('\n')

  beforeAll(async () => {
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    // Slow enough that a removal under load finds requests in flight.
    extra = await startUpstream('extra', (req, res) => {
      req.resume()
      setTimeout(() => res.writeHead(200, { 'x-upstream': 'extra' }).end('extra'), 20)
    })
    dir = mkdtempSync(join(tmpdir(), 'sluice-runtime-'))
    configFile = join(dir, 'sluice.yaml')
    writeFileSync(configFile, yaml('{ blue: 100, green: 0 }'))
    proxy = await startProxy(
      {
        versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
        weights: { blue: 100, green: 0 },
        drain: { timeoutMs: 5000 },
      },
      { source: configFile },
    )
  })
  afterAll(async () => {
    await proxy.stop()
    await Promise.all([blue.close(), green.close(), extra.close()])
    rmSync(dir, { recursive: true, force: true })
  })

  it('refuses bad input with a stable code and leaves the proxy serving', async () => {
    const cases: [string, unknown, number, string][] = [
      ['POST', { version: 'blue', url: 'ftp://x' }, 400, 'SLUICE_INVALID_BODY'],
      ['POST', { version: 'blue', url: 'http://127.0.0.1:1/path' }, 400, 'SLUICE_INVALID_BODY'],
      ['POST', { version: 'blue' }, 400, 'SLUICE_INVALID_BODY'],
      ['POST', { version: 'blue', url: extra.url, more: 1 }, 400, 'SLUICE_INVALID_BODY'],
      ['POST', { version: 'nope', url: extra.url }, 404, 'SLUICE_UNKNOWN_TARGET'],
      ['POST', { version: 'blue', url: green.url }, 409, 'SLUICE_INSTANCE_EXISTS'],
      ['DELETE', { url: 'http://127.0.0.1:1' }, 404, 'SLUICE_UNKNOWN_TARGET'],
      ['DELETE', { url: blue.url }, 409, 'SLUICE_INSTANCE_NOT_RUNTIME'],
      ['DELETE', {}, 400, 'SLUICE_INVALID_BODY'],
    ]
    for (const [method, body, status, code] of cases) {
      const r = await admin(proxy, method, '/v1/instances', body)
      expect([method, body, r.status, r.body.error?.code]).toEqual([method, body, status, code])
    }
    expect((await admin(proxy, 'POST', '/v1/instances', { version: 'blue', url: extra.url }, null)).status).toBe(401)
    expect(await names(proxy, 5)).toEqual(new Set(['blue']))
  })

  it('adds, keeps across a reload, then removes under load with 0 failed requests; both audited', async () => {
    const added = await admin(proxy, 'POST', '/v1/instances', { version: 'blue', url: `${extra.url}/` })
    expect(added.status).toBe(201)
    expect(added.body.versions.blue.instances.map((i: { url: string; source: string }) => [i.url, i.source])).toEqual([
      [blue.url, 'config'],
      [extra.url, 'api'],
    ])
    expect((await admin(proxy, 'POST', '/v1/instances', { version: 'green', url: extra.url })).status).toBe(409)
    await expect
      .poll(async () => (await names(proxy, 10)).has('extra'), { message: 'the added instance to take traffic' })
      .toBeTruthy()

    // A reload keeps it (and the file's weights change applies).
    writeFileSync(configFile, yaml('{ blue: 90, green: 10 }'))
    expect((await admin(proxy, 'POST', '/v1/reload')).status).toBe(200)
    expect((await rows(proxy, 'blue')).map((r) => r.url)).toEqual([blue.url, extra.url])

    const load = steadyLoad({ url: proxy.url, concurrency: 8 })
    await expect.poll(() => extra.hits, { message: 'load on the runtime instance' }).toBeGreaterThan(50)
    const removed = await admin(proxy, 'DELETE', '/v1/instances', { url: extra.url })
    expect(removed.status).toBe(202)
    const leaving = removed.body.versions.blue.instances.find((i: { url: string }) => i.url === extra.url)
    // Requests were in flight on it: it shows draining until idle.
    if (leaving) expect(leaving.draining).toBe(true)
    await expect
      .poll(async () => (await rows(proxy, 'blue')).length, {
        message: 'the removed instance to leave',
        timeout: 10_000,
      })
      .toBe(1)
    const r = await load.stop()
    expect(r.failures).toEqual([])
    expect(r.failed).toBe(0)
    console.log(`runtime removal under load: ${r.sent} requests, ${r.failed} failed`)
    expect((await admin(proxy, 'DELETE', '/v1/instances', { url: extra.url })).status).toBe(404)

    const audit = (await admin(proxy, 'GET', '/v1/audit')).body as { action: string; actor: string; after: unknown; before: unknown }[]
    const add = audit.find((e) => e.action === 'instance.add')
    const remove = audit.find((e) => e.action === 'instance.remove')
    expect(add).toMatchObject({ actor: 'admin', after: { version: 'blue', url: extra.url } })
    expect(remove).toMatchObject({ actor: 'admin', before: { version: 'blue', url: extra.url }, after: null })
  })

  it('sluice ctl instances add|remove', async () => {
    const env = { SLUICE_ADMIN_URL: proxy.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN }
    const add = await ctlInProcess(['instances', 'add', 'green', extra.url], env)
    expect(add.stderr).toBe('')
    expect(add.code).toBe(0)
    expect(add.stdout).toContain(`added ${extra.url} to green`)
    expect((await rows(proxy, 'green')).map((r) => [r.url, r.source])).toContainEqual([extra.url, 'api'])
    const again = await ctlInProcess(['instances', 'add', 'green', extra.url], env)
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('SLUICE_INSTANCE_EXISTS')
    const state = await ctlInProcess(['state'], env)
    expect(state.stdout).toMatch(/SOURCE/)
    const remove = await ctlInProcess(['instances', 'remove', extra.url], env)
    expect(remove.code).toBe(0)
    expect(remove.stdout).toContain(`removing ${extra.url}`)
    await expect.poll(async () => (await rows(proxy, 'green')).length, { message: 'the instance to leave' }).toBe(1)
    const usage = await ctlInProcess(['instances', 'add', 'green'], env)
    expect(usage.code).toBe(2)
  })
})

describe('runtime instances are shared and durable', () => {
  let blue: TestUpstream
  let extra: TestUpstream
  let redis: TestRedis
  let dir: string

  beforeAll(async () => {
    blue = await startUpstream('blue')
    extra = await startUpstream('extra')
    redis = await startRedis()
    dir = mkdtempSync(join(tmpdir(), 'sluice-runtime-state-'))
  })
  afterAll(async () => {
    await redis.stop()
    await Promise.all([blue.close(), extra.close()])
    rmSync(dir, { recursive: true, force: true })
  })

  const versions = () => ({ blue: { instances: [{ url: blue.url }] } })

  it('through Redis: added on one proxy, the other routes to it and removes it too', async () => {
    const a = await startProxy({ versions: versions(), redis: { url: redis.url, keyPrefix: 'rt:' } })
    const b = await startProxy({ versions: versions(), redis: { url: redis.url, keyPrefix: 'rt:' } })
    try {
      expect((await admin(a, 'POST', '/v1/instances', { version: 'blue', url: extra.url })).status).toBe(201)
      await expect
        .poll(async () => (await rows(b, 'blue')).some((r) => r.url === extra.url && r.source === 'api'), {
          message: 'the peer to add it',
        })
        .toBeTruthy()
      await expect
        .poll(async () => (await names(b, 10)).has('extra'), { message: 'the peer to route to it' })
        .toBeTruthy()
      expect((await admin(b, 'DELETE', '/v1/instances', { url: extra.url })).status).toBe(202)
      await expect.poll(async () => (await rows(a, 'blue')).length, { message: 'the first proxy to remove it' }).toBe(1)
    } finally {
      await a.stop()
      await b.stop()
    }
  })

  it('with state.file: a restart finds the runtime instance again', async () => {
    const file = join(dir, 'state.json')
    const first = await startProxy({ versions: versions(), state: { file } })
    expect((await admin(first, 'POST', '/v1/instances', { version: 'blue', url: extra.url })).status).toBe(201)
    await first.stop()
    const second = await startProxy({ versions: versions(), state: { file } })
    try {
      expect((await rows(second, 'blue')).map((r) => [r.url, r.source])).toEqual([
        [blue.url, 'config'],
        [extra.url, 'api'],
      ])
      await expect
        .poll(async () => (await names(second, 10)).has('extra'), { message: 'the restored instance to take traffic' })
        .toBeTruthy()
    } finally {
      await second.stop()
    }
  })
})
