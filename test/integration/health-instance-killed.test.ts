import type { IncomingMessage, ServerResponse } from 'node:http'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitForInstance } from '../helpers/instance-state.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/** GETs answer at once; a POST is read whole and then held without an answer; `posts` counts them. */
function holdingPosts(name: string) {
  const state = { posts: 0 }
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST') {
      state.posts++
      req.resume()
      return
    }
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
    res.end(JSON.stringify({ name }))
  }
  return { state, handler }
}

/** A sticky key that the proxy currently sends to the upstream named `name`. */
async function keyLandingOn(proxyUrl: string, name: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const key = `probe-key-${i}`
    const res = await request(proxyUrl + '/', { headers: { 'x-user-id': key } })
    await res.body.dump()
    if (res.headers['x-upstream'] === name) return key
  }
  throw new Error(`no key lands on ${name}`)
}

describe('an instance killed under load', () => {
  const b1 = holdingPosts('b1')
  const b2 = holdingPosts('b2')
  let u1: TestUpstream
  let u2: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    u1 = await startUpstream('b1', b1.handler)
    u2 = await startUpstream('b2', b2.handler)
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: u1.url }, { url: u2.url }] } },
      sticky: { keys: ['header:x-user-id'] },
      health: { intervalMs: 250, timeoutMs: 250 },
    })
    await waitFor(async () => (await admin(proxy, 'GET', '/readyz')).status === 200, 'proxy ready')
  })
  afterAll(async () => {
    await proxy.stop()
    await u1.close()
    await u2.close()
  })

  it('fails no GET; a POST in flight to it gets a clean 502 and is never retried elsewhere', async () => {
    const key = await keyLandingOn(proxy.url, 'b1')
    const load = recordedLoad({ url: proxy.url })
    await moreRequests(load.records, 200)

    const post = request(proxy.url + '/orders', {
      method: 'POST',
      headers: { 'x-user-id': key, 'content-type': 'application/json' },
      body: JSON.stringify({ item: 'book' }),
    })
    await waitFor(() => b1.state.posts === 1, 'the POST reached b1')
    await u1.kill()
    const killedAt = performance.now()

    const res = await post
    const body = (await res.body.json()) as { error: { code: string } }
    expect(res.statusCode).toBe(502)
    expect(res.headers['content-type']).toContain('application/json')
    expect(body.error.code).toBe('SLUICE_UPSTREAM_FAILED')
    expect(b2.state.posts).toBe(0)

    await waitForInstance(proxy, 'blue', 0, (i) => !i.healthy, 'b1 probed unhealthy')
    await moreRequests(load.records, 200)
    const records = await load.stop()

    expect(failed(records).length, describeFailures(records)).toBe(0)
    const after = records.filter((r) => r.sentAt > killedAt)
    expect(after.length).toBeGreaterThan(100)
    expect(new Set(after.map((r) => r.upstream))).toEqual(new Set(['b2']))

    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text()
    expect(metrics).toMatch(new RegExp(`sluice_upstream_healthy\\{[^}]*instance="${u1.url}"[^}]*\\} 0`))
    expect(metrics).toMatch(new RegExp(`sluice_upstream_healthy\\{[^}]*instance="${u2.url}"[^}]*\\} 1`))
  })
})
