import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { waitForInstance } from '../helpers/instance-state.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { startUpstream } from '../helpers/upstream.js'

describe('an upstream that stops gracefully under load', () => {
  let f: DeployFixture

  beforeAll(async () => {
    // Refused connections while it closes eject it; a short ejection lets the restart be seen.
    f = await startDeployFixture(
      { blue: [{ name: 'b1' }, { name: 'b2' }] },
      { outlier: { consecutiveFailures: 5, ejectionMs: 500 } },
    )
  })
  afterAll(() => f.close())

  it('fails no request while it closes its keep-alive connections, and takes traffic again once restarted', async () => {
    const { proxy } = f
    const u1 = f.ups.blue![0]!
    const load = recordedLoad({ url: proxy.url })
    await moreRequests(load.records, 200)
    const closing = u1.closeGracefully()
    await moreRequests(load.records, 200)
    await closing
    await waitForInstance(proxy, 'blue', 0, (i) => !i.healthy, 'b1 probed unhealthy')
    const goneAt = performance.now()
    await moreRequests(load.records, 100)

    // A restart on the same address: probes bring it back without touching the proxy.
    const restartAt = performance.now()
    f.ups.blue![0] = await startUpstream('b1', undefined, u1.port)
    await waitForInstance(proxy, 'blue', 0, (i) => i.healthy, 'b1 probed healthy again')
    const backAt = performance.now()
    await moreRequests(load.records, 200)
    const records = await load.stop()

    expect(failed(records).length, describeFailures(records)).toBe(0)
    const whileGone = records.filter((r) => r.sentAt > goneAt && r.doneAt < restartAt)
    expect(whileGone.length).toBeGreaterThan(0)
    expect(new Set(whileGone.map((r) => r.upstream))).toEqual(new Set(['b2']))
    expect(records.filter((r) => r.sentAt > backAt).some((r) => r.upstream === 'b1')).toBe(true)
  })
})
