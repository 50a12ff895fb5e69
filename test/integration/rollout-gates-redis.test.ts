import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { steadyLoad } from '../helpers/load.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startRedis, type TestRedis } from '../helpers/redis-server.js'
import { startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js'
import { metric, type Recorded, recordedUpstream } from './rollout-fixture.js'

/**
 * Gates and notifications across two proxies sharing Redis: only the
 * driving proxy (the lease holder) checks gates and notifies; an approval,
 * a pause and a resume given through the other one reach it through the
 * store, and each is told once.
 */
describe('rollout gates across proxies sharing Redis', () => {
  let redis: TestRedis
  let blue: Recorded
  let green: Recorded
  let receiver: WebhookReceiver
  const proxies: TestProxy[] = []
  const loads: { stop(): Promise<unknown> }[] = []

  beforeAll(async () => {
    redis = await startRedis()
    blue = await recordedUpstream('blue')
    green = await recordedUpstream('green')
    receiver = await startReceiver()
  })
  afterAll(async () => {
    await Promise.all(loads.map((l) => l.stop()))
    await Promise.all(proxies.map((p) => p.stop()))
    await Promise.all([blue.upstream.close(), green.upstream.close(), receiver.close()])
    await redis?.stop()
  })

  const start = async (keyPrefix: string) => {
    const p = await startProxy({
      versions: {
        blue: { instances: [{ url: blue.upstream.url }] },
        green: { instances: [{ url: green.upstream.url }] },
      },
      weights: { blue: 100 },
      outlier: { consecutiveFailures: 0 },
      analysis: { intervalMs: 200, windowMs: 10_000, minRequests: 50 },
      redis: { url: redis.url, keyPrefix, leaseMs: 1000 },
    })
    proxies.push(p)
    loads.push(steadyLoad({ url: p.url, concurrency: 2 }))
    return p
  }

  const state = async (p: TestProxy) => (await admin(p, 'GET', '/v1/state')).body

  it('an approval through the follower reaches the leader, which alone checks and notifies', async () => {
    const prefix = `gates-${randomBytes(4).toString('hex')}:`
    const a = await start(prefix)
    const b = await start(prefix)
    const leaderOf = async () => ((await state(a)).store.leader ? [a, b] : (await state(b)).store.leader ? [b, a] : undefined)
    const [leader, follower] = await vi.waitFor(
      async () => {
        const pair = await leaderOf()
        expect(pair, 'a leader').toBeDefined()
        return pair!
      },
      { timeout: 10_000, interval: 20 },
    )
    const started = await admin(follower!, 'POST', '/v1/rollout', {
      canary: 'green',
      baseline: 'blue',
      steps: [{ weight: 20, holdMs: 300, approval: true }, { weight: 100 }],
      gates: [{ name: 'smoke', webhook: { url: receiver.url + '/gate' } }],
      notify: [{ url: receiver.url + '/events' }],
    })
    expect(started.status).toBe(201)
    await expect
      .poll(async () => (await state(follower!)).rollout.awaiting, { message: 'awaiting approval', timeout: 15_000 })
      .toBe('approval')

    // A pause and a resume through the follower are told by the leader.
    expect((await admin(follower!, 'POST', '/v1/rollout/pause')).status).toBe(200)
    await expect
      .poll(() => receiver.on('/events').some((e) => e.body.event === 'paused'), { message: 'the paused notification' })
      .toBeTruthy()
    expect((await admin(follower!, 'POST', '/v1/rollout/resume')).status).toBe(200)
    await expect
      .poll(async () => (await state(follower!)).rollout.awaiting, { message: 'awaiting again', timeout: 15_000 })
      .toBe('approval')

    expect((await admin(follower!, 'POST', '/v1/rollout/approve')).status).toBe(200)
    await expect
      .poll(async () => (await state(follower!)).rollout.status, { message: 'promoted', timeout: 15_000 })
      .toBe('promoted')
    await expect
      .poll(() => receiver.on('/events').some((e) => e.body.event === 'promoted'), {
        message: 'the promoted notification',
      })
      .toBeTruthy()

    expect(receiver.on('/events').map((e) => e.body.event)).toEqual([
      'started',
      'awaiting',
      'paused',
      'awaiting',
      'promoted',
    ])
    expect(receiver.on('/gate').length).toBeGreaterThanOrEqual(1)
    expect(await metric(leader!, 'sluice_gate_checks_total{gate="smoke",result="pass"}')).toBeGreaterThanOrEqual(1)
    expect(await metric(follower!, 'sluice_gate_checks_total{gate="smoke",result="pass"}')).toBeUndefined()
  }, 60_000)
})
