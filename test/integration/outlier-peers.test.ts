import { afterEach, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { faulty, faultySpecs, share, splitWindows } from './outlier-fixture.js'
import { metric } from './rollout-fixture.js'

/**
 * The second signal: an instance that fails clearly more than its version's
 * other instances, whether or not its failures come in a row. Figures are
 * printed; the assertions are what must hold.
 */

let f: DeployFixture | undefined
afterEach(async () => {
  await f?.close()
  f = undefined
})

const PEERS = { intervalMs: 500, minRequests: 50, abovePeersPercent: 20 }

describe('peer outlier detection under load', () => {
  it.each([
    { mode: 'peers', outlier: { consecutiveFailures: 0, peers: PEERS } },
    { mode: 'consecutiveFailures 5', outlier: { consecutiveFailures: 5 } },
  ])('an instance failing 30% while its peers do not is ejected ($mode)', async ({ mode, outlier }) => {
    f = await startDeployFixture(
      {
        blue: [{ name: 'b1', handler: faulty('b1', { kind: '500', rate: 0.3 }) }, { name: 'b2' }, { name: 'b3' }],
        green: [{ name: 'g1' }],
      },
      { weights: { blue: 90, green: 10 }, outlier: { ejectionMs: 60_000, ...outlier } },
    )
    const b1 = f.ups.blue![0]!
    const instance = f.proxy.sluice.versions[0]!.instances[0]!
    const started = performance.now()
    const load = recordedLoad({ url: f.proxy.url, concurrency: 8, keyFor: () => undefined })
    await expect.poll(() => instance.ejected, { message: `b1 ejected (${mode})`, timeout: 20_000 }).toBeTruthy()
    const after = { ms: Math.round(performance.now() - started), hits: b1.hits }
    await moreRequests(load.records, 1_000)
    const records = await load.stop()
    console.log(
      `30% 500s on one of three blue instances, ${mode}: ejected after ${after.ms} ms and ` +
        `${after.hits} of its requests; ${b1.hits - after.hits} more while ejected`,
    )
    // In flight when it went, at most the load's 8 loops.
    expect(b1.hits - after.hits).toBeLessThanOrEqual(8)
    const [w] = splitWindows(records, { b: 'blue', g: 'green' }, 60_000)
    expect(Math.abs(share(w!, 'green') - 10)).toBeLessThan(5)
  })

  it('a fault shared by every instance alike ejects none by the peer rule', async () => {
    f = await startDeployFixture(faultySpecs({ blue: 3, green: 1 }, { kind: '500', rate: 0.3 }), {
      weights: { blue: 90, green: 10 },
      // 200 requests at least: chance alone then puts an instance 20 points above its peers about never (8 sigma).
      outlier: { consecutiveFailures: 0, ejectionMs: 60_000, peers: { ...PEERS, minRequests: 200 } },
    })
    const load = recordedLoad({ url: f.proxy.url, concurrency: 8, keyFor: () => undefined })
    // At least 6 intervals of load, however fast the machine.
    const started = performance.now()
    await moreRequests(load.records, 4_000, 30_000)
    while (performance.now() - started < 6 * PEERS.intervalMs) await moreRequests(load.records, 500)
    const records = await load.stop()
    const intervals = Math.round((records.at(-1)!.doneAt - records[0]!.sentAt) / PEERS.intervalMs)
    console.log(`30% 500s on every instance, peers mode: 0 ejections expected over ${intervals} intervals`)
    expect(intervals).toBeGreaterThanOrEqual(6)
    expect(await metric(f.proxy, 'sluice_outlier_ejections_total{version="blue"}')).toBeUndefined()
  })
})
