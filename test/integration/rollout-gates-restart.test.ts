import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js'
import { traffic, useStateFileFixture } from './state-file-fixture.js'

describe('state.file: a rollout that awaits an approval survives SIGKILL', () => {
  const fixture = useStateFileFixture(['analysis: { intervalMs: 100, windowMs: 5000, minRequests: 20 }'])
  let receiver: WebhookReceiver
  beforeAll(async () => {
    receiver = await startReceiver()
  })
  afterAll(() => receiver?.close())

  it('keeps what it awaits, its gates (with their headers) and notifications across a restart', async () => {
    const f = fixture()
    const a = await f.start()
    const started = await a.admin('POST', '/v1/rollout', {
      canary: 'green',
      baseline: 'blue',
      steps: [{ weight: 20, holdMs: 200, approval: true }, { weight: 100 }],
      gates: [{ name: 'smoke', webhook: { url: receiver.url + '/gate', headers: { authorization: 'Bearer s3cret' } } }],
      notify: [{ url: receiver.url + '/events' }],
    })
    expect(started.status).toBe(201)
    const load = traffic(a)
    await expect
      .poll(async () => (await a.admin('GET', '/v1/state')).body.rollout.awaiting, {
        message: 'awaiting',
        timeout: 15_000,
      })
      .toBe('approval')
    await expect.poll(() => receiver.on('/events').length, { message: 'two notifications' }).toBe(2)
    expect(await a.stop('SIGKILL')).toBe(null)
    await load.stop()

    const b = await f.start()
    const load2 = traffic(b)
    try {
      const r = (await b.admin('GET', '/v1/state')).body.rollout
      expect(r).toMatchObject({ status: 'progressing', step: 0, awaiting: 'approval' })
      expect(r.gates[0].webhook.headers).toEqual({ authorization: '(hidden)' })
      expect((await b.admin('POST', '/v1/rollout/approve')).status).toBe(200)
      await expect
        .poll(async () => (await b.admin('GET', '/v1/state')).body.rollout.status, {
          message: 'promoted',
          timeout: 15_000,
        })
        .toBe('promoted')
      // The gate was checked after the restart with the header as configured.
      expect(receiver.on('/gate').at(-1)!.headers.authorization).toBe('Bearer s3cret')
      await expect
        .poll(() => receiver.on('/events').length, { message: 'the promoted notification' })
        .toBeGreaterThanOrEqual(3)
      expect(receiver.on('/events').map((e) => e.body.event)).toEqual(['started', 'awaiting', 'promoted'])
    } finally {
      await load2.stop()
    }
  }, 60_000)
})
