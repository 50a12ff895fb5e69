import type { IncomingMessage } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { describeFailures, failed, recordedLoad } from '../helpers/recorded-load.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Probe results of the flapping instance, one per probe: + passes, - fails.
 * With healthyThreshold 2 and unhealthyThreshold 3 it turns healthy at
 * probe 1 (first probe), unhealthy at 7, healthy at 11, unhealthy at 14,
 * healthy at 16; the short runs in between are pending transitions that a
 * disagreeing result cancels.
 */
const SCRIPT = '+--+---+-++---++'
const EXPECTED = ['1 healthy', '7 unhealthy', '11 healthy', '14 unhealthy', '16 healthy']

describe('an instance that flaps between healthy and unhealthy', () => {
  let f: DeployFixture
  /** Probes the flapping instance has answered. */
  let probes = 0

  beforeAll(async () => {
    f = await startDeployFixture(
      { blue: [{ name: 'flappy' }, { name: 'steady' }] },
      { health: { intervalMs: 200, timeoutMs: 200, healthyThreshold: 2, unhealthyThreshold: 3 } },
      (ups) => {
        const flappy = ups.blue![0]!
        flappy.healthy = SCRIPT[0] === '+'
        flappy.server.on('request', (req: IncomingMessage) => {
          if (req.url !== '/healthz') return
          // This probe has been answered already: set up the answer to the next one.
          probes++
          flappy.healthy = (SCRIPT[probes] ?? '+') === '+'
        })
      },
    )
  })
  afterAll(() => f.close())

  it('changes state exactly when the thresholds say so, without failing a request', async () => {
    const { proxy } = f
    const flappy = f.ups.blue![0]!
    const instance = proxy.sluice.versions[0]!.instances[0]!
    expect(instance.healthy).toBe(true)
    // Ready means the first probe passed.
    const transitions = ['1 healthy']
    let last = true
    proxy.sluice.hooks.push({
      onTable() {
        if (instance.healthy === last) return
        last = instance.healthy
        transitions.push(`${probes} ${last ? 'healthy' : 'unhealthy'}`)
      },
    })

    const load = recordedLoad({ url: proxy.url, concurrency: 4 })
    await waitFor(() => transitions.length === EXPECTED.length, 'all transitions', 20_000)
    const records = await load.stop()

    expect(transitions).toEqual(EXPECTED)
    expect(failed(records).length, describeFailures(records)).toBe(0)
    const state = await fetch(`${proxy.adminUrl}/metrics`).then((r) => r.text())
    expect(state).toMatch(new RegExp(`sluice_upstream_healthy\\{[^}]*upstream="${flappy.url}"[^}]*\\} 1`))
  })
})
