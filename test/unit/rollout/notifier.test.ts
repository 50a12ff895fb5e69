import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { NotifyTarget } from '../../../src/rollout/gates-schema.js'
import { type Notification, Notifier } from '../../../src/rollout/notifier.js'
import { startReceiver, type WebhookReceiver } from '../../helpers/webhook-receiver.js'

let receiver: WebhookReceiver | undefined
afterEach(async () => {
  await receiver?.close()
  receiver = undefined
})

const log = pino({ level: 'silent' })
const ALL = ['started', 'step', 'awaiting', 'paused', 'promoted', 'rolled_back'] as const
const target = (url: string, extra: Partial<NotifyTarget> = {}): NotifyTarget => ({
  url,
  events: [...ALL],
  format: 'json',
  headers: {},
  ...extra,
})
const note = (event: Notification['event'], step: number): Notification => ({
  event,
  at: new Date(0).toISOString(),
  rollout: { id: 'green-1', canary: 'green', step, awaiting: null },
  reason: null,
})

describe('Notifier (real HTTP receiver)', () => {
  it('keeps event order per target through retries; only subscribed events are sent', async () => {
    receiver = await startReceiver()
    let failed = 0
    const n = new Notifier({ log, onFailed: () => failed++, retryDelaysMs: [100, 200, 400] })
    const flaky = target(receiver.url + '/flaky')
    const picky = target(receiver.url + '/picky', { events: ['promoted'], headers: { 'x-key': 'k' } })
    receiver.answer('/flaky', 503)
    n.send([flaky, picky], note('started', 0))
    n.send([flaky, picky], note('step', 1))
    n.send([flaky, picky], note('promoted', 2))
    // The first event fails twice, then the target recovers: nothing overtakes it.
    await expect.poll(() => receiver!.on('/flaky').length, { message: 'two failed tries' }).toBeGreaterThanOrEqual(2)
    receiver.answer('/flaky', 204)
    await n.idle()
    const ok = receiver.on('/flaky').filter((_, i, all) => i >= all.length - 3)
    expect(ok.map((r) => r.body.event)).toEqual(['started', 'step', 'promoted'])
    expect(receiver.on('/flaky').map((r) => r.body.event)).toEqual(['started', 'started', 'started', 'step', 'promoted'])
    expect(receiver.on('/picky').map((r) => [r.body.event, r.headers['x-key']])).toEqual([['promoted', 'k']])
    expect(failed).toBe(0)
  })

  it('gives up after three retries, counts it once, and goes on with the next event', async () => {
    receiver = await startReceiver()
    let failed = 0
    const n = new Notifier({ log, onFailed: () => failed++, retryDelaysMs: [10, 20, 40] })
    receiver.answer('/down', 500)
    const t = target(receiver.url + '/down')
    n.send([t], note('started', 0))
    n.send([t], note('rolled_back', 0))
    await n.idle()
    expect(receiver.on('/down').map((r) => r.body.event)).toEqual([...Array(4).fill('started'), ...Array(4).fill('rolled_back')])
    expect(failed).toBe(2)
  })

  it('formats a Slack incoming webhook message', async () => {
    receiver = await startReceiver()
    const n = new Notifier({ log, onFailed: () => undefined })
    const waiting = { ...note('awaiting', 1), rollout: { canary: 'green', step: 1, steps: [{ weight: 10 }, { weight: 50 }, { weight: 100 }], awaiting: 'approval' }, reason: 'r' }
    n.send([target(receiver.url + '/slack', { format: 'slack' })], waiting)
    await n.idle()
    expect(receiver.on('/slack')[0]!.body).toEqual({ text: 'sluice rollout of green awaiting at step 2 of 3 (awaits approval): r' })
  })
})
