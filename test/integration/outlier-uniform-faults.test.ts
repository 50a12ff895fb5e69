import { afterEach, describe, expect, it, vi } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { type FaultKind, faultySpecs, share, splitWindows } from './outlier-fixture.js'
import { metric } from './rollout-fixture.js'

/**
 * A fault that hits every instance alike (a shared dependency failing):
 * blue has two instances and weight 90, green one and weight 10 (a canary),
 * every instance fails 30 % of requests. Ejection may take one blue instance
 * out at a time; the split between the versions must stay as the weights say.
 */

let f: DeployFixture | undefined
afterEach(async () => {
  await f?.close()
  f = undefined
})

const VERSIONS = { b: 'blue', g: 'green' }

describe('uniform faults on every instance under load', () => {
  // A hung request holds its loop for about a second (two tries), so the timeout case needs more loops.
  it.each<{ kind: FaultKind; concurrency: number; requests: number }>([
    { kind: '500', concurrency: 8, requests: 4_000 },
    { kind: 'reset', concurrency: 8, requests: 4_000 },
    { kind: 'timeout', concurrency: 48, requests: 1_500 },
  ])(
    '30 percent $kind: the split stays within 5 points of the weights for the whole run',
    async ({ kind, concurrency, requests }) => {
      f = await startDeployFixture(faultySpecs({ blue: 2, green: 1 }, { kind, rate: 0.3 }), {
        weights: { blue: 90, green: 10 },
        outlier: { consecutiveFailures: 3, ejectionMs: 300 },
        timeouts: { upstreamMs: 150 },
      })
      const load = recordedLoad({ url: f.proxy.url, concurrency, keyFor: () => undefined })
      await moreRequests(load.records, requests, 60_000)
      // A fast machine sends the requests within one window; the split is judged over several.
      await vi.waitFor(() => expect(performance.now() - load.records[0]!.sentAt).toBeGreaterThan(3_000), {
        timeout: 30_000,
        interval: 50,
      })
      const records = await load.stop()

      const windows = splitWindows(records, VERSIONS, 1_000)
      const green = windows.map((w) => Number(share(w, 'green').toFixed(1)))
      const answered = windows.reduce((n, w) => n + w.answered, 0)
      const greenTotal = windows.reduce((n, w) => n + (w.byVersion.green ?? 0), 0)
      const blueEjections = (await metric(f.proxy, 'sluice_outlier_ejections_total{version="blue"}')) ?? 0
      const greenEjections = (await metric(f.proxy, 'sluice_outlier_ejections_total{version="green"}')) ?? 0
      console.log(
        `30% ${kind} on every instance: green answered ${((100 * greenTotal) / answered).toFixed(1)}% of ` +
          `${answered} requests (weight 10); per 1 s window: ${green.join(' ')}; ` +
          `${blueEjections} blue ejections, ${greenEjections} green`,
      )
      // The faults did eject (one blue instance at a time), and green's one instance never.
      expect(blueEjections).toBeGreaterThan(0)
      expect(greenEjections).toBe(0)
      expect(windows.length).toBeGreaterThan(1)
      for (const w of windows) {
        // A last window with a handful of requests says nothing about the split.
        if (w.answered < 100) continue
        expect(Math.abs(share(w, 'green') - 10), `window ${w.second}: ${JSON.stringify(w.byVersion)}`).toBeLessThan(5)
      }
      expect(Math.abs((100 * greenTotal) / answered - 10)).toBeLessThan(5)
    },
  )
})
