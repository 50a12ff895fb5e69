import type { IncomingMessage, ServerResponse } from 'node:http'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, keysLandingOn, startDeployFixture } from '../helpers/deploy-fixture.js'
import { waitForInstance } from '../helpers/instance-state.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'
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

describe('an instance killed under load', () => {
  const b1 = holdingPosts('b1')
  const b2 = holdingPosts('b2')
  let f: DeployFixture

  beforeAll(async () => {
    f = await startDeployFixture({
      blue: [
        { name: 'b1', handler: b1.handler },
        { name: 'b2', handler: b2.handler },
      ],
    })
  })
  afterAll(() => f.close())

  it('fails no GET; a POST in flight to it gets a clean 502 and is never retried elsewhere', async () => {
    const { proxy } = f
    const u1 = f.ups.blue![0]!
    const u2 = f.ups.blue![1]!
    const [key] = await keysLandingOn(proxy.url, 'b1', 1)
    const load = recordedLoad({ url: proxy.url })
    await moreRequests(load.records, 200)

    const post = request(proxy.url + '/orders', {
      method: 'POST',
      headers: { 'x-user-id': key!, 'content-type': 'application/json' },
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
    expect(metrics).toMatch(new RegExp(`sluice_upstream_healthy\\{[^}]*upstream="${u1.url}"[^}]*\\} 0`))
    expect(metrics).toMatch(new RegExp(`sluice_upstream_healthy\\{[^}]*upstream="${u2.url}"[^}]*\\} 1`))
  })
})
