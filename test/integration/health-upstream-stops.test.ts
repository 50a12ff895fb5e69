import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitForInstance } from '../helpers/instance-state.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

describe('an upstream that stops gracefully under load', () => {
  let u1: TestUpstream
  let u2: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    u1 = await startUpstream('b1')
    u2 = await startUpstream('b2')
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: u1.url }, { url: u2.url }] } },
      sticky: { keys: ['header:x-user-id'] },
      health: { intervalMs: 250, timeoutMs: 250 },
      // Refused connections while it closes eject it; a short ejection lets the restart be seen.
      outlier: { consecutiveFailures: 5, ejectionMs: 500 },
    })
    await waitFor(async () => (await admin(proxy, 'GET', '/readyz')).status === 200, 'proxy ready')
  })
  afterAll(async () => {
    await proxy.stop()
    await u1.close()
    await u2.close()
  })

  it('fails no request while it closes its keep-alive connections, and takes traffic again once restarted', async () => {
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
    u1 = await startUpstream('b1', undefined, u1.port)
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
