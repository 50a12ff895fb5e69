import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { admin } from '../helpers/proxy.js'
import { moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { faulty, share, splitWindows } from './outlier-fixture.js'
import { metric } from './rollout-fixture.js'

/**
 * Passive ejection inside a version under real load: one bad instance goes,
 * its version keeps its share on the others; a version's last usable
 * instance and more than maxEjectionPercent of a version never go.
 */

let f: DeployFixture | undefined
afterEach(async () => {
  await f?.close()
  f = undefined
})

const VERSIONS = { b: 'blue', g: 'green' }
const ALWAYS = { kind: '500' as const, rate: 1 }

async function state(): Promise<any> {
  return (await admin(f!.proxy, 'GET', '/v1/state')).body
}

describe('outlier ejection under load', () => {
  it('one bad instance is ejected after consecutiveFailures, takes no share while ejected; its version keeps its own', async () => {
    f = await startDeployFixture(
      { blue: [{ name: 'b1', handler: faulty('b1', ALWAYS) }, { name: 'b2' }], green: [{ name: 'g1' }] },
      { weights: { blue: 90, green: 10 }, outlier: { consecutiveFailures: 5, ejectionMs: 30_000 } },
    )
    const [b1, b2] = f.ups.blue!
    const b1Instance = f.proxy.sluice.versions[0]!.instances[0]!
    // One request at a time, so every try that reaches b1 counts and none is in flight when it goes.
    let sent = 0
    while (!b1Instance.ejected && sent < 200) {
      const res = await request(f.proxy.url + '/')
      await res.body.dump()
      sent++
    }
    expect(b1Instance.ejected).toBe(true)
    expect(b1!.hits).toBe(5)

    const ejectedAt = Date.now()
    const s = await state()
    const view = s.versions.blue.instances[0]
    expect(view).toMatchObject({ ejected: true, usable: false, healthy: true })
    const until = Date.parse(view.ejectedUntil)
    expect(until).toBeGreaterThan(ejectedAt + 25_000)
    expect(until).toBeLessThanOrEqual(ejectedAt + 30_000)
    expect(s.versions.blue.instances[1]).toMatchObject({ ejected: false, ejectedUntil: null, usable: true })
    expect(await metric(f.proxy, 'sluice_outlier_ejections_total{version="blue"}')).toBe(1)

    const hitsBefore = { b1: b1!.hits, b2: b2!.hits }
    const keyFor = (loop: number, n: number) => (loop % 2 ? `k-${n % 97}` : undefined)
    const load = recordedLoad({ url: f.proxy.url, concurrency: 8, keyFor })
    await moreRequests(load.records, 2_000)
    const records = await load.stop()
    const b1While = b1!.hits - hitsBefore.b1
    const blueWhile = b1While + b2!.hits - hitsBefore.b2
    expect(b1While / blueWhile).toBeLessThan(0.05)
    expect(records.every((r) => r.status === 200)).toBe(true)
    const [w] = splitWindows(records, VERSIONS, 60_000)
    console.log(
      `one bad instance: ejected after ${b1!.hits} tries (${sent} requests sent one by one); while ejected it took ` +
        `${b1While} of blue's ${blueWhile}; green answered ${share(w!, 'green').toFixed(1)}% (weight 10)`,
    )
    // Sticky keys included: the version split is the weights', within 5 points.
    expect(Math.abs(share(w!, 'green') - 10)).toBeLessThan(5)
  })

  it("a version's one instance is never ejected: its failures stay with its users, for the analysis", async () => {
    f = await startDeployFixture(
      { blue: [{ name: 'b1' }, { name: 'b2' }], green: [{ name: 'g1', handler: faulty('g1', ALWAYS) }] },
      { weights: { blue: 90, green: 10 }, outlier: { consecutiveFailures: 3, ejectionMs: 30_000 } },
    )
    const load = recordedLoad({ url: f.proxy.url, concurrency: 8, keyFor: () => undefined })
    await moreRequests(load.records, 2_000)
    const records = await load.stop()
    const s = await state()
    expect(s.versions.green.instances[0]).toMatchObject({ ejected: false, usable: true })
    expect(await metric(f.proxy, 'sluice_outlier_ejections_total{version="green"}')).toBeUndefined()
    const [w] = splitWindows(records, VERSIONS, 60_000)
    expect(Math.abs(share(w!, 'green') - 10)).toBeLessThan(5)
    // Every green request failed, and the analysis saw them all.
    expect(records.filter((r) => r.upstream === 'g1').every((r) => r.status === 500)).toBe(true)
    expect(s.analysis.green.errors).toBeGreaterThan(100)
    expect(s.analysis.blue.errors).toBe(0)
  })

  it('with all 4 instances of a version failing, at most maxEjectionPercent (50: 2) are ejected at once', async () => {
    const blue = ['b1', 'b2', 'b3', 'b4'].map((name) => ({ name, handler: faulty(name, ALWAYS) }))
    f = await startDeployFixture(
      { blue, green: [{ name: 'g1' }] },
      { weights: { blue: 90, green: 10 }, outlier: { consecutiveFailures: 3, ejectionMs: 400 } },
    )
    const instances = f.proxy.sluice.versions[0]!.instances
    const counts = new Set<number>()
    // Sampled after every request: a third ejection would be seen.
    const load = recordedLoad({ url: f.proxy.url, concurrency: 8, keyFor: () => undefined })
    const sampler = setInterval(() => counts.add(instances.filter((i) => i.ejected).length), 5)
    await moreRequests(load.records, 3_000)
    clearInterval(sampler)
    const records = await load.stop()
    const ejections = await metric(f.proxy, 'sluice_outlier_ejections_total{version="blue"}')
    const [w] = splitWindows(records, VERSIONS, 60_000)
    console.log(
      `4 failing instances, maxEjectionPercent 50: ejected at once ${[...counts].sort().join(', ')}; ` +
        `${ejections} ejections; green answered ${share(w!, 'green').toFixed(1)}% (weight 10)`,
    )
    expect(Math.max(...counts)).toBe(2)
    expect(ejections).toBeGreaterThan(2)
    expect(Math.abs(share(w!, 'green') - 10)).toBeLessThan(5)
  })
})
