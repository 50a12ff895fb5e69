import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

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
  let ups: TestUpstream[]
  let proxy: TestProxy

  beforeAll(async () => {
    ups = [await startUpstream('blue'), await startUpstream('blue'), await startUpstream('green')]
    proxy = await startProxy({
      versions: {
        blue: { instances: [{ url: ups[0]!.url }, { url: ups[1]!.url }] },
        green: { instances: [{ url: ups[2]!.url }] },
      },
      weights: { blue: 80, green: 20 },
      health: { intervalMs: 150, timeoutMs: 150, healthyThreshold: 1, unhealthyThreshold: 2 },
    })
    await waitFor(async () => (await admin(proxy, 'GET', '/readyz')).status === 200, 'proxy ready')
  })
  afterAll(async () => {
    await proxy.stop()
    for (const u of ups) await u.close()
  })

  it('answers 503 with a JSON error when nothing is usable, and serves again as soon as probes pass', async () => {
    expect((await get(proxy.url + '/')).status).toBe(200)
    const ports = ups.map((u) => u.port)
    for (const u of ups) await u.kill()
    await waitFor(async () => {
      const s = await admin(proxy, 'GET', '/v1/state')
      return Object.values(s.body.versions).every((v: any) => v.instances.every((i: any) => !i.healthy))
    }, 'every instance probed unhealthy')

    for (let i = 0; i < 5; i++) {
      const r = await get(proxy.url + '/')
      expect(r.status).toBe(503)
      expect(r.type).toContain('application/json')
      expect(r.body.error.code).toBe('SLUICE_NO_USABLE_INSTANCE')
    }

    // Only green comes back first: blue's weight passes to it.
    ups[2] = await startUpstream('green', undefined, ports[2])
    await waitFor(async () => (await get(proxy.url + '/')).status === 200, 'traffic resumes on green')
    for (let i = 0; i < 10; i++) expect((await get(proxy.url + '/')).body.name).toBe('green')

    ups[0] = await startUpstream('blue', undefined, ports[0])
    ups[1] = await startUpstream('blue', undefined, ports[1])
    await waitFor(async () => {
      const s = await admin(proxy, 'GET', '/v1/state')
      return s.body.versions.blue.instances.every((i: any) => i.healthy)
    }, 'blue probed healthy')
    const counts: Record<string, number> = {}
    for (let i = 0; i < 100; i++) {
      const name = (await get(proxy.url + '/')).body.name
      counts[name] = (counts[name] ?? 0) + 1
    }
    expect(counts).toEqual({ blue: 80, green: 20 })
  })
})
