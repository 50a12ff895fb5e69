import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { ctlInProcess } from '../helpers/cli.js'
import { steadyLoad } from '../helpers/load.js'
import { startExporter, startPrometheus, type TestExporter, type TestPrometheus } from '../helpers/prometheus.js'
import { admin, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { freePort } from '../helpers/redis-server.js'
import { startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js'
import { auditEntry, metric, recordedUpstream, rolloutProxy } from './rollout-fixture.js'

/**
 * Rollout gates against real servers: Debian's prometheus scraping a test
 * exporter every second, a real webhook receiver, the real proxy under a
 * steady load with the verdict every 200 ms. Every wait is on a condition.
 */

let exporter: TestExporter
let prom: TestPrometheus
let receiver: WebhookReceiver

const CONVERSION = 'checkout_conversion{version="$canary"}'

beforeAll(async () => {
  exporter = await startExporter()
  exporter.set('checkout_conversion{version="green"}', 0.97)
  exporter.set('checkout_conversion{version="amber"}', 0.9)
  prom = await startPrometheus(exporter.url)
  receiver = await startReceiver()
  // The first scrape lands a few seconds after the start.
  await vi.waitFor(
    async () => expect((await prom.values('checkout_conversion')).length, 'the first scrape').toBe(2),
    { timeout: 30_000, interval: 200 },
  )
}, 60_000)
afterAll(async () => {
  await prom?.stop()
  await exporter?.close()
  await receiver?.close()
})

let cleanup: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const c of cleanup.reverse()) await c()
  cleanup = []
})

/** blue (baseline) and green (canary) behind the proxy, under load; green errs when told. */
async function setUp(extra: Record<string, unknown> = {}) {
  const blue = await recordedUpstream('blue')
  const green = await recordedUpstream('green')
  const proxy = await rolloutProxy(blue, green, extra)
  const load = steadyLoad({ url: proxy.url, concurrency: 4 })
  cleanup.push(
    () => blue.upstream.close(),
    () => green.upstream.close(),
    () => proxy.stop(),
    () => load.stop(),
  )
  return { proxy, green }
}

async function rollout(proxy: TestProxy): Promise<any> {
  return (await admin(proxy, 'GET', '/v1/state')).body.rollout
}

async function until(proxy: TestProxy, what: string, ok: (r: any) => boolean, timeoutMs = 15_000): Promise<any> {
  return vi.waitFor(
    async () => {
      const last = await rollout(proxy)
      if (!ok(last)) throw new Error(`timed out waiting for ${what}; last rollout: ${JSON.stringify(last)}`)
      return last
    },
    { timeout: timeoutMs, interval: 50 },
  )
}

const start = (proxy: TestProxy, body: Record<string, unknown>) =>
  admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', ...body })

const twoSteps = [{ weight: 20, holdMs: 300 }, { weight: 100 }]

describe('Prometheus gates', () => {
  it('a gate within its limits lets the step advance, and every check is counted', async () => {
    const { proxy } = await setUp()
    const gates = [{ name: 'conversion', prometheus: { url: prom.url, query: CONVERSION, min: 0.95, max: 1 } }]
    expect((await start(proxy, { steps: twoSteps, gates })).status).toBe(201)
    await until(proxy, 'promoted', (r) => r.status === 'promoted')
    const step = await auditEntry(proxy, 'rollout.promote')
    expect(step.reason).toContain('gate conversion: 0.97 within 0.95..1')
    expect(await metric(proxy, 'sluice_gate_checks_total{gate="conversion",result="pass"}')).toBeGreaterThanOrEqual(1)
  })

  it('a gate below its min holds the step naming the value, then breaches after gateTimeoutMs', async () => {
    const { proxy } = await setUp()
    const gates = [{ name: 'conversion', prometheus: { url: prom.url, query: CONVERSION.replace('$canary', 'amber'), min: 0.95 } }]
    expect((await start(proxy, { steps: twoSteps, gates, gateTimeoutMs: 1500 })).status).toBe(201)
    const held = await until(proxy, 'awaiting the gate', (r) => r.awaiting === 'gate:conversion')
    expect(held).toMatchObject({ status: 'progressing', step: 0 })
    expect(held.reason).toBe('gate conversion: 0.9 below min 0.95 at step 1 of 2 (weight 20)')
    expect((await auditEntry(proxy, 'rollout.await')).reason).toContain('0.9 below min 0.95')
    const since = held.gateFailingSince as number
    const done = await until(proxy, 'rolled back', (r) => r.status === 'rolled_back')
    expect(done.reason).toContain('gate conversion: 0.9 below min 0.95, still failing after 1500 ms')
    expect(done.endedAt - since).toBeGreaterThanOrEqual(1500)
    expect((await admin(proxy, 'GET', '/v1/state')).body.weights).toEqual({ blue: 100, green: 0 })
    expect(await metric(proxy, 'sluice_gate_checks_total{gate="conversion",result="fail"}')).toBeGreaterThanOrEqual(2)
  })

  it('a query with no data never passes; an unreachable Prometheus is an error', async () => {
    const { proxy } = await setUp()
    const gates = [
      { name: 'nodata', prometheus: { url: prom.url, query: 'checkout_conversion{version="none"}', min: 0 } },
    ]
    expect((await start(proxy, { steps: twoSteps, gates })).status).toBe(201)
    const held = await until(proxy, 'awaiting the gate', (r) => r.awaiting === 'gate:nodata')
    expect(held.reason).toContain('gate nodata: no data')
    await expect
      .poll(async () => ((await metric(proxy, 'sluice_gate_checks_total{gate="nodata",result="fail"}')) ?? 0), {
        message: 'five failed checks',
      })
      .toBeGreaterThanOrEqual(5)
    expect((await rollout(proxy)).status).toBe('progressing')
    expect(await metric(proxy, 'sluice_gate_checks_total{gate="nodata",result="pass"}')).toBeUndefined()
    expect((await admin(proxy, 'POST', '/v1/rollout/abort')).status).toBe(200)

    const closed = `http://127.0.0.1:${await freePort()}`
    const dead = [{ name: 'gone', prometheus: { url: closed, query: 'up', min: 1, timeoutMs: 500 } }]
    expect((await start(proxy, { steps: twoSteps, gates: dead })).status).toBe(201)
    const error = await until(proxy, 'awaiting the gate', (r) => r.awaiting === 'gate:gone')
    expect(error.reason).toMatch(/^gate gone: prometheus failed: ECONNREFUSED/)
    expect(await metric(proxy, 'sluice_gate_checks_total{gate="gone",result="error"}')).toBeGreaterThanOrEqual(1)
  })
})

describe('webhook gates', () => {
  it('POSTs the rollout context; a 500 holds, a 2xx passes, no answer in time is an error', async () => {
    const { proxy } = await setUp()
    receiver.answer('/smoke', 500)
    const gates = [
      {
        name: 'smoke',
        webhook: { url: receiver.url + '/smoke', timeoutMs: 300, headers: { authorization: 'Bearer ci-secret' } },
      },
    ]
    const started = await start(proxy, { steps: twoSteps, gates })
    expect(started.status).toBe(201)
    // The token never shows in the state view.
    expect(started.body.rollout.gates[0].webhook.headers).toEqual({ authorization: '(hidden)' })
    const held = await until(proxy, 'awaiting the webhook', (r) => r.awaiting === 'gate:smoke')
    expect(held.reason).toBe('gate smoke: webhook answered 500 at step 1 of 2 (weight 20)')
    const call = receiver.on('/smoke')[0]!
    expect(call.headers.authorization).toBe('Bearer ci-secret')
    expect(call.headers['content-type']).toBe('application/json')
    expect(call.body).toMatchObject({ step: 0, canary: 'green', baseline: 'blue', gate: 'smoke' })
    expect(call.body.rollout).toMatchObject({ id: held.id, status: 'progressing', canary: 'green', step: 0 })

    receiver.answer('/smoke', 'hang')
    await until(proxy, 'a timed-out webhook', (r) => r.reason?.startsWith('gate smoke: webhook no answer within 300 ms'))
    expect(await metric(proxy, 'sluice_gate_checks_total{gate="smoke",result="error"}')).toBeGreaterThanOrEqual(1)

    receiver.answer('/smoke', 204)
    await until(proxy, 'promoted', (r) => r.status === 'promoted')
    expect(await metric(proxy, 'sluice_gate_checks_total{gate="smoke",result="pass"}')).toBeGreaterThanOrEqual(1)
  })
})

describe('approvals and windows', () => {
  it('a step stops for an approval; approve before that is 409; sluice ctl rollout approve moves it', async () => {
    const { proxy } = await setUp()
    const steps = [{ weight: 20, holdMs: 300, approval: true }, { weight: 100 }]
    expect((await start(proxy, { steps })).status).toBe(201)
    const early = await admin(proxy, 'POST', '/v1/rollout/approve')
    expect(early.status).toBe(409)
    expect(early.body.error.code).toBe('SLUICE_ROLLOUT_CONFLICT')
    expect(early.body.error.message).toContain('not awaiting an approval')
    const held = await until(proxy, 'awaiting approval', (r) => r.awaiting === 'approval')
    expect(held).toMatchObject({ status: 'progressing', step: 0 })
    const status = await ctlInProcess(['rollout', 'status'], env(proxy))
    expect(status.stdout).toMatch(/awaiting\s+approval/)
    const approved = await ctlInProcess(['rollout', 'approve'], env(proxy))
    expect(approved.code).toBe(0)
    expect(approved.stdout).toContain('rollout approved')
    const audit = await auditEntry(proxy, 'rollout.approve')
    expect(audit).toMatchObject({ source: 'admin', actor: 'admin' })
    await until(proxy, 'promoted', (r) => r.status === 'promoted')
  }, 60_000)

  it('a breach while a step awaits an approval still rolls back', async () => {
    const { proxy, green } = await setUp()
    const steps = [{ weight: 30, holdMs: 300, approval: true }, { weight: 100 }]
    expect((await start(proxy, { steps })).status).toBe(201)
    await until(proxy, 'awaiting approval', (r) => r.awaiting === 'approval')
    green.mode.errorEvery = 2
    const done = await until(proxy, 'rolled back', (r) => r.status === 'rolled_back')
    expect(done.awaiting).toBe(null)
    expect(done.reason).toContain('error rate')
  })

  it('outside every window a held step waits; an abort is never held back', async () => {
    const { proxy } = await setUp()
    const hour = new Date().getUTCHours()
    const hh = (h: number) => String(h % 24).padStart(2, '0') + ':00'
    // A window that opens two hours from now and closes an hour later: never "now".
    const windows = [{ from: hh(hour + 2), to: hh(hour + 3) }]
    const started = await start(proxy, { steps: twoSteps, windows })
    expect(started.body.rollout.step).toBe(0) // entering the first step does not wait
    const held = await until(proxy, 'awaiting the window', (r) => r.awaiting === 'window')
    expect(held.reason).toBe('outside every deploy window at step 1 of 2 (weight 20)')
    expect((await admin(proxy, 'POST', '/v1/rollout/abort')).status).toBe(200)
    expect((await rollout(proxy)).status).toBe('rolled_back')
  })
})

describe('the whole setup: 5 -> 25 (approval) -> 50 (approval, webhook, Prometheus) -> 100', () => {
  it('runs end to end with every notification once and in order; dead targets slow nothing', async () => {
    const { proxy } = await setUp()
    receiver.answer('/smoke-e2e', 204)
    receiver.answer('/hang', 'hang')
    const events = ['started', 'step', 'awaiting', 'paused', 'promoted', 'rolled_back']
    const t0 = Date.now()
    const started = await start(proxy, {
      steps: [
        { weight: 5, holdMs: 300 },
        { weight: 25, holdMs: 300, approval: true },
        { weight: 50, holdMs: 300, approval: true },
        { weight: 100 },
      ],
      gates: [
        { name: 'smoke', webhook: { url: receiver.url + '/smoke-e2e' } },
        { name: 'conversion', prometheus: { url: prom.url, query: CONVERSION, min: 0.95 } },
      ],
      gateTimeoutMs: 60_000,
      notify: [
        { url: receiver.url + '/events', events },
        { url: receiver.url + '/slack', events: ['awaiting', 'promoted'], format: 'slack' },
        { url: receiver.url + '/hang', events },
        { url: `http://127.0.0.1:${await freePort()}/refused`, events: ['started'] },
      ],
    })
    expect(started.status).toBe(201)
    expect(started.body.rollout.notify[1].url).toBe(`${receiver.url}/(hidden)`)
    for (const weight of [25, 50]) {
      await until(proxy, `awaiting approval at ${weight}`, (r) => r.awaiting === 'approval' && r.steps[r.step].weight === weight)
      expect((await admin(proxy, 'POST', '/v1/rollout/approve')).status).toBe(200)
    }
    const done = await until(proxy, 'promoted', (r) => r.status === 'promoted')
    const took = Date.now() - t0
    expect(done.reason).toContain('gate smoke: webhook answered 204; gate conversion: 0.97 within min 0.95')
    // Gates are checked before every step advances, the last time at step 2.
    expect(new Set(receiver.on('/smoke-e2e').map((c) => c.body.step))).toEqual(new Set([0, 1, 2]))
    expect(receiver.on('/smoke-e2e').at(-1)!.body).toMatchObject({ step: 2, canary: 'green', gate: 'smoke' })
    expect((await admin(proxy, 'GET', '/v1/state')).body.weights).toEqual({ blue: 0, green: 100 })

    await expect.poll(() => receiver.on('/events').length, { message: 'six notifications' }).toBeGreaterThanOrEqual(6)
    const told = receiver.on('/events')
    expect(told.map((n) => [n.body.event, n.body.rollout.step, n.body.rollout.awaiting])).toEqual([
      ['started', 0, null],
      ['step', 1, null],
      ['awaiting', 1, 'approval'],
      ['step', 2, null],
      ['awaiting', 2, 'approval'],
      ['promoted', 3, null],
    ])
    for (const n of told) {
      expect(Object.keys(n.body).sort()).toEqual(['at', 'event', 'reason', 'rollout'])
      expect(new Date(n.body.at).toISOString()).toBe(n.body.at)
      expect(n.body.rollout.id).toBe(done.id)
    }
    expect(told[2]!.body.reason).toContain('awaits an approval')
    expect(told[5]!.body.reason).toContain('promoted: step 3 of 4 (weight 50)')
    const slack = receiver.on('/slack').map((n) => n.body)
    expect(slack).toHaveLength(3)
    expect(Object.keys(slack[0])).toEqual(['text'])
    expect(slack[2].text).toMatch(/^sluice rollout of green promoted at step 4 of 4: promoted: /)
    // The hanging target still waits on its first try (5 s); the rollout did not.
    expect(receiver.on('/hang')).toHaveLength(1)
    console.log(`whole rollout ${took} ms, with a hanging and a refusing notification target`)
    // The refused target is given up on after its retries (1 + 2 + 4 s) and counted.
    await expect
      .poll(async () => ((await metric(proxy, 'sluice_notifications_failed_total')) ?? 0), {
        message: 'the failed notification counted',
        timeout: 15_000,
        interval: 200,
      })
      .toBeGreaterThanOrEqual(1)
    // Seconds after the rollout ended (the retries above), a duplicate would have arrived by now.
    expect(receiver.on('/events')).toHaveLength(6)
  }, 60_000)
})

function env(proxy: TestProxy): Record<string, string> {
  return { SLUICE_ADMIN_URL: proxy.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN }
}
