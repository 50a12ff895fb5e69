import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildOnce, type ServeProcess, startServe } from '../helpers/cli.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/**
 * The log lines of a real `sluice serve` process (README "Logs"): pino JSON
 * with an ISO time; access lines with the request ID, bytes, user agent, host
 * and client on every method; an instance going down at warn.
 */

type Line = Record<string, unknown>

describe('sluice serve logs', () => {
  let dir: string
  let blue: TestUpstream
  let serve: ServeProcess

  const lines = (): Line[] =>
    serve.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Line]
      } catch {
        return []
      }
    })

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-logs-'))
    const [, upstream] = await Promise.all([buildOnce(), startUpstream('blue')])
    blue = upstream
    const config = join(dir, 'sluice.json')
    writeFileSync(
      config,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, token: 't' },
        versions: { blue: { instances: [{ url: blue.url }] } },
        health: { path: '/healthz', intervalMs: 100, timeoutMs: 100, healthyThreshold: 1, unhealthyThreshold: 1 },
        log: { level: 'info', access: true },
      }),
    )
    serve = await startServe(config)
  }, 180_000)

  afterAll(async () => {
    await serve?.stop()
    await blue?.close()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('writes ISO times and one access line per request with id, bytes, user agent, host and client', async () => {
    expect(lines()[0]!['time']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    await expect.poll(async () => (await fetch(serve.url + '/')).status, { timeout: 10_000 }).toBe(200)
    const post = await fetch(serve.url + '/orders?id=7', {
      method: 'POST',
      body: 'x'.repeat(1000),
      headers: { 'user-agent': 'pipeline-check/1.0', 'x-request-id': 'order-7' },
    })
    const body = await post.text()
    const get = await fetch(serve.url + '/')
    await get.text()
    const byId = (id: string | null) => lines().find((l) => l['log'] === 'access' && l['requestId'] === id)
    await expect.poll(() => byId(get.headers.get('x-request-id')), { timeout: 10_000 }).toBeDefined()
    const access = [byId('order-7'), byId(get.headers.get('x-request-id'))]
    expect(access[0]).toMatchObject({
      level: 30,
      requestId: 'order-7',
      method: 'POST',
      host: `127.0.0.1:${serve.port}`,
      path: '/orders?id=7',
      status: 200,
      bytes: Buffer.byteLength(body),
      version: 'blue',
      instance: blue.url,
      client: '127.0.0.1',
      userAgent: 'pipeline-check/1.0',
    })
    expect(access[1]).toMatchObject({ method: 'GET', path: '/', client: '127.0.0.1', bytes: expect.any(Number) })
  })

  it('logs "instance unhealthy" at warn', async () => {
    await blue.kill()
    await expect
      .poll(() => lines().find((l) => l['msg'] === 'instance unhealthy'), { timeout: 10_000 })
      .toMatchObject({ level: 40, instance: blue.url, version: 'blue' })
  })
})
