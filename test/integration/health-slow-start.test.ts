import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { waitForInstance } from '../helpers/instance-state.js'

const SLOW_START_MS = 4_000

/** Share of 200 distinct sticky keys (sent 8 at a time) that land on the upstream named `name`. */
async function keyShare(url: string, name: string, round: number): Promise<number> {
  const dispatcher = new Agent({ connections: 8 })
  let on = 0
  for (let batch = 0; batch < 25; batch++) {
    const names = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const res = await request(url, { dispatcher, headers: { 'x-user-id': `ramp-${round}-${batch * 8 + i}` } })
        await res.body.dump()
        return res.headers['x-upstream']
      }),
    )
    on += names.filter((n) => n === name).length
  }
  await dispatcher.close()
  return on / 200
}

describe('slow start of a recovered instance', () => {
  let f: DeployFixture

  beforeAll(async () => {
    f = await startDeployFixture(
      { blue: [{ name: 'b1' }, { name: 'b2' }] },
      {
        health: {
          intervalMs: 250,
          timeoutMs: 250,
          healthyThreshold: 1,
          unhealthyThreshold: 2,
          slowStartMs: SLOW_START_MS,
        },
      },
    )
  })
  afterAll(() => f.close())

  it('starts with a small share of the keys and ramps to its full share over slowStartMs', async () => {
    const { proxy } = f
    const b1 = f.ups.blue![0]!
    // Initial instances serve their full share from the start.
    expect(await keyShare(proxy.url, 'b1', 0)).toBeGreaterThan(0.3)
    b1.healthy = false
    await waitForInstance(proxy, 'blue', 0, (i) => !i.healthy, 'b1 unhealthy')
    expect(await keyShare(proxy.url, 'b1', 1)).toBe(0)
    b1.healthy = true
    await waitForInstance(proxy, 'blue', 0, (i) => i.healthy, 'b1 healthy again')
    const early = await keyShare(proxy.url, 'b1', 2)
    await new Promise((r) => setTimeout(r, SLOW_START_MS))
    const full = await keyShare(proxy.url, 'b1', 3)
    expect(early).toBeLessThan(0.3)
    expect(full).toBeGreaterThan(0.3)
    expect(full).toBeLessThan(0.7)
  })
})
