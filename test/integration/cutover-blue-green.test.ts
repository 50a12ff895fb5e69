import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

describe('blue -> green cutover under load', () => {
  let blue: TestUpstream[]
  let green: TestUpstream[]
  let proxy: TestProxy

  beforeAll(async () => {
    blue = [await startUpstream('blue'), await startUpstream('blue')]
    green = [await startUpstream('green'), await startUpstream('green')]
    proxy = await startProxy({
      versions: {
        blue: { instances: blue.map((u) => ({ url: u.url })) },
        green: { instances: green.map((u) => ({ url: u.url })) },
      },
      weights: { blue: 100, green: 0 },
      sticky: { keys: ['header:x-user-id'] },
      health: { intervalMs: 250, timeoutMs: 250 },
    })
    await waitFor(async () => (await admin(proxy, 'GET', '/readyz')).status === 200, 'proxy ready')
  })
  afterAll(async () => {
    await proxy.stop()
    for (const u of [...blue, ...green]) await u.close()
  })

  it('PUT /v1/weights 100/0 -> 0/100 fails no request, and every request sent after it reaches green', async () => {
    const load = recordedLoad({ url: proxy.url })
    await moreRequests(load.records, 300)
    const r = await admin(proxy, 'PUT', '/v1/weights', { blue: 0, green: 100 })
    expect(r.status).toBe(200)
    const switchedAt = performance.now()
    await moreRequests(load.records, 300)
    const records = await load.stop()

    expect(failed(records).length, describeFailures(records)).toBe(0)
    const before = records.filter((x) => x.doneAt < switchedAt)
    const after = records.filter((x) => x.sentAt > switchedAt)
    expect(before.length).toBeGreaterThan(0)
    expect(new Set(before.filter((x) => x.sentAt < switchedAt - 50).map((x) => x.upstream))).toEqual(new Set(['blue']))
    expect(after.length).toBeGreaterThan(100)
    expect(new Set(after.map((x) => x.upstream))).toEqual(new Set(['green']))
    // Sticky and keyless requests both moved.
    expect(after.some((x) => x.key !== undefined)).toBe(true)
    expect(after.some((x) => x.key === undefined)).toBe(true)
  })

  it('switching back and forth under load fails nothing', async () => {
    const load = recordedLoad({ url: proxy.url })
    for (const weights of [
      { blue: 50, green: 50 },
      { blue: 100, green: 0 },
      { blue: 10, green: 90 },
      { blue: 0, green: 100 },
    ]) {
      await moreRequests(load.records, 100)
      expect((await admin(proxy, 'PUT', '/v1/weights', weights)).status).toBe(200)
    }
    await moreRequests(load.records, 100)
    const records = await load.stop()
    expect(failed(records).length, describeFailures(records)).toBe(0)
  })
})
