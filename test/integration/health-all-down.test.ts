import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { admin } from '../helpers/proxy.js'
import { startUpstream } from '../helpers/upstream.js'

async function get(url: string): Promise<{ status: number; body: any; type: string | undefined }> {
  const res = await request(url)
  const text = await res.body.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.statusCode, body, type: res.headers['content-type'] as string | undefined }
}

describe('every instance down', () => {
  let f: DeployFixture

  beforeAll(async () => {
    f = await startDeployFixture(
      { blue: [{ name: 'blue' }, { name: 'blue' }], green: [{ name: 'green' }] },
      {
        weights: { blue: 80, green: 20 },
        health: { intervalMs: 150, timeoutMs: 150, healthyThreshold: 1, unhealthyThreshold: 2 },
      },
    )
  })
  afterAll(() => f.close())

  it('answers 503 with a JSON error when nothing is usable, and serves again as soon as probes pass', async () => {
    const { proxy, ups } = f
    const [blue, green] = [ups.blue!, ups.green!]
    expect((await get(proxy.url + '/')).status).toBe(200)
    for (const u of [...blue, ...green]) await u.kill()
    await expect.poll(async () => {
      const s = await admin(proxy, 'GET', '/v1/state')
      return Object.values(s.body.versions).every((v: any) => v.instances.every((i: any) => !i.healthy))
    }, { message: 'every instance probed unhealthy' }).toBeTruthy()

    for (let i = 0; i < 5; i++) {
      const r = await get(proxy.url + '/')
      expect(r.status).toBe(503)
      expect(r.type).toContain('application/json')
      expect(r.body.error.code).toBe('SLUICE_NO_USABLE_INSTANCE')
    }

    // Only green comes back first: blue's weight passes to it.
    green[0] = await startUpstream('green', undefined, green[0]!.port)
    await expect
      .poll(async () => (await get(proxy.url + '/')).status, { message: 'traffic resumes on green' })
      .toBe(200)
    for (let i = 0; i < 10; i++) expect((await get(proxy.url + '/')).body.name).toBe('green')

    blue[0] = await startUpstream('blue', undefined, blue[0]!.port)
    blue[1] = await startUpstream('blue', undefined, blue[1]!.port)
    await expect.poll(async () => {
      const s = await admin(proxy, 'GET', '/v1/state')
      return s.body.versions.blue.instances.every((i: any) => i.healthy)
    }, { message: 'blue probed healthy' }).toBeTruthy()
    const counts: Record<string, number> = {}
    for (let i = 0; i < 100; i++) {
      const name = (await get(proxy.url + '/')).body.name
      counts[name] = (counts[name] ?? 0) + 1
    }
    expect(counts).toEqual({ blue: 80, green: 20 })
  })
})
