import { afterEach, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { admin } from '../helpers/proxy.js'
import { moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { faultySpecs, share, splitWindows } from './outlier-fixture.js'

/**
 * A rollout while a shared dependency fails for everyone: both versions keep
 * their users at every step, so the analysis compares the canary against a
 * baseline that really serves, and both fail alike.
 */

let f: DeployFixture | undefined
afterEach(async () => {
  await f?.close()
  f = undefined
})

interface Snapshot {
  t: number
  status: string
  green: number
  blueRequests: number
  greenRequests: number
}

describe('a rollout under uniform faults', () => {
  it("is judged on both versions' real traffic: each step's split is its weight, the analysis sees both", async () => {
    f = await startDeployFixture(faultySpecs({ blue: 2, green: 1 }, { kind: '500', rate: 0.3 }), {
      weights: { blue: 100, green: 0 },
      outlier: { consecutiveFailures: 3, ejectionMs: 300 },
      // Both versions fail alike: the margin keeps a chance difference of a few points from rolling back.
      analysis: { intervalMs: 200, windowMs: 2_000, minRequests: 50, maxErrorRateIncrease: 0.1 },
    })
    const proxy = f.proxy
    const load = recordedLoad({ url: proxy.url, concurrency: 8, keyFor: () => undefined })
    await moreRequests(load.records, 300)
    const steps = [
      { weight: 10, holdMs: 1_500 },
      { weight: 30, holdMs: 1_500 },
      { weight: 100, holdMs: 0 },
    ]
    expect((await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps })).status).toBe(201)
    const snapshots: Snapshot[] = []
    await expect.poll(async () => {
        const s = (await admin(proxy, 'GET', '/v1/state')).body
        snapshots.push({
          t: performance.now(),
          status: s.rollout.status,
          green: s.weights.green,
          blueRequests: s.analysis.blue.requests,
          greenRequests: s.analysis.green.requests,
        })
        return s.rollout.status !== 'progressing'
      }, { message: 'the rollout to end', timeout: 30_000 }).toBeTruthy()
    const records = await load.stop()
    const last = snapshots.at(-1)!
    const report = (await admin(proxy, 'GET', '/v1/rollouts')).body.at(-1)
    const metrics = (await admin(proxy, 'GET', '/metrics')).body as string
    const ejections = /sluice_outlier_ejections_total\{version="blue"\} (\d+)/.exec(metrics)?.[1]

    // While the canary had part of the traffic (from 400 ms into a step), the analysis had both versions' requests.
    const stepStart = (weight: number) => snapshots.find((s) => s.green === weight)!.t
    const during = snapshots.filter(
      (s) => s.status === 'progressing' && s.green > 0 && s.green < 100 && s.t - stepStart(s.green) >= 400,
    )
    expect(during.length).toBeGreaterThan(5)
    for (const s of during) {
      expect(s.blueRequests, JSON.stringify(s)).toBeGreaterThan(0)
      expect(s.greenRequests, JSON.stringify(s)).toBeGreaterThan(0)
    }
    // Each step's split, away from its edges, is its weight within 5 points.
    const measured: string[] = []
    for (const weight of [10, 30]) {
      const at = snapshots.filter((s) => s.green === weight)
      const from = at[0]!.t + 200
      const to = at.at(-1)!.t - 200
      const inStep = records.filter((r) => r.sentAt >= from && r.doneAt <= to)
      const [w] = splitWindows(inStep, { b: 'blue', g: 'green' }, 60_000)
      measured.push(`weight ${weight}: green ${share(w!, 'green').toFixed(1)}% of ${w!.answered}`)
      expect(Math.abs(share(w!, 'green') - weight), measured.at(-1)).toBeLessThan(5)
    }
    console.log(
      `rollout under 30% 500s everywhere: ${measured.join('; ')}; ended ${last.status}; report figures ` +
        `${JSON.stringify(report.figures)}; ${ejections} blue ejections`,
    )
    expect(last.status).toBe('promoted')
    expect(report.figures.baseline.requests).toBeGreaterThan(0)
    expect(report.figures.canary.requests).toBeGreaterThan(0)
    expect(report.figures.baseline.errorRate).toBeGreaterThan(0.15)
    expect(report.figures.canary.errorRate).toBeGreaterThan(0.15)
  })
})
