import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { admin } from '../helpers/proxy.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'

describe('blue -> green cutover under load', () => {
  let f: DeployFixture

  beforeAll(async () => {
    f = await startDeployFixture(
      { blue: [{ name: 'blue' }, { name: 'blue' }], green: [{ name: 'green' }, { name: 'green' }] },
      { weights: { blue: 100, green: 0 } },
    )
  })
  afterAll(() => f.close())

  it('PUT /v1/weights 100/0 -> 0/100 fails no request, and every request sent after it reaches green', async () => {
    const { proxy } = f
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
    const { proxy } = f
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
