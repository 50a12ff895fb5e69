import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { ctlInProcess } from '../helpers/cli.js'
import { admin, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { auditEntry, metric } from './rollout-fixture.js'

/**
 * An operator's rollout controls through the admin API and `sluice ctl`,
 * on the real proxy. There is no traffic, so the analysis never has enough
 * samples to move a step: every change here is the operator's.
 */

let f: BlueGreen
let proxy: TestProxy

beforeAll(async () => {
  f = await blueGreen({ weights: { blue: 100 }, analysis: { intervalMs: 100, windowMs: 5000, minRequests: 50 } })
  proxy = f.proxy
})
afterAll(() => f?.close())

const steps = [{ weight: 30, holdMs: 1000 }, { weight: 60 }, { weight: 100 }]

function expectError(r: { status: number; body: any }, status: number, code: string, path?: string): void {
  expect(r.status).toBe(status)
  expect(r.body.error.code).toBe(code)
  expect(typeof r.body.error.message).toBe('string')
  if (path !== undefined) expect(r.body.error.path).toBe(path)
}

describe('rollout controls through the admin API', () => {
  it('with nothing running every control answers 409 and changes nothing', async () => {
    const revision = (await admin(proxy, 'GET', '/v1/state')).body.revision
    for (const action of ['pause', 'resume', 'promote', 'abort']) {
      expectError(await admin(proxy, 'POST', `/v1/rollout/${action}`), 409, 'SLUICE_ROLLOUT_CONFLICT')
    }
    const state = (await admin(proxy, 'GET', '/v1/state')).body
    expect(state.revision).toBe(revision)
    expect(state.rollout.status).toBe('idle')
    expect((await admin(proxy, 'GET', '/v1/rollouts')).body).toEqual([])
  })

  it('an invalid start answers 400 naming the field; a start without a token 401', async () => {
    // No `rollout` in the config: the request must name everything.
    expectError(await admin(proxy, 'POST', '/v1/rollout', {}), 400, 'SLUICE_ROLLOUT_INVALID', 'canary')
    expectError(
      await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', steps }),
      400,
      'SLUICE_ROLLOUT_INVALID',
      'baseline',
    )
    expectError(
      await admin(proxy, 'POST', '/v1/rollout', { canary: 'nope', baseline: 'blue', steps }),
      400,
      'SLUICE_ROLLOUT_INVALID',
      'canary',
    )
    expectError(
      await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps: [{ weight: 50 }] }),
      400,
      'SLUICE_ROLLOUT_INVALID',
      'steps.0.weight',
    )
    expectError(await admin(proxy, 'POST', '/v1/rollout', { canary: 5 }), 400, 'SLUICE_INVALID_BODY', 'canary')
    expectError(await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', stepz: [] }), 400, 'SLUICE_INVALID_BODY')
    expectError(await admin(proxy, 'POST', '/v1/rollout', { canary: 'green' }, null), 401, 'SLUICE_UNAUTHORIZED')
    expect((await admin(proxy, 'GET', '/v1/state')).body.rollout.status).toBe('idle')
  })

  it('start, pause, resume and promote, each with its 409 when it does not apply', async () => {
    const started = await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps })
    expect(started.status).toBe(201)
    expect(started.body.weights).toEqual({ blue: 70, green: 30 })
    expect(started.body.rollout).toMatchObject({
      status: 'progressing',
      baseline: 'blue',
      canary: 'green',
      step: 0,
      reason: null,
      onBreach: 'rollback',
    })
    expect(started.body.rollout.steps[1]).toEqual({ weight: 60, holdMs: 60000 })
    expectError(
      await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps }),
      409,
      'SLUICE_ROLLOUT_CONFLICT',
    )
    expectError(await admin(proxy, 'POST', '/v1/rollout/resume'), 409, 'SLUICE_ROLLOUT_CONFLICT')

    const paused = await admin(proxy, 'POST', '/v1/rollout/pause')
    expect(paused.status).toBe(200)
    expect(paused.body.rollout).toMatchObject({ status: 'paused', reason: 'paused by admin at step 1 of 3 (weight 30)' })
    expectError(await admin(proxy, 'POST', '/v1/rollout/pause'), 409, 'SLUICE_ROLLOUT_CONFLICT')
    expect((await admin(proxy, 'POST', '/v1/rollout/resume')).body.rollout).toMatchObject({ status: 'progressing' })

    const promoted = await admin(proxy, 'POST', '/v1/rollout/promote')
    expect(promoted.status).toBe(200)
    expect(promoted.body.weights).toEqual({ blue: 0, green: 100 })
    expect(promoted.body.rollout).toMatchObject({ status: 'promoted', step: 2 })
    for (const action of ['pause', 'resume', 'promote', 'abort']) {
      expectError(await admin(proxy, 'POST', `/v1/rollout/${action}`), 409, 'SLUICE_ROLLOUT_CONFLICT')
    }

    const audit = ((await admin(proxy, 'GET', '/v1/audit')).body as any[]).filter((e) => e.action.startsWith('rollout'))
    expect(audit.map((e) => [e.action, e.source, e.actor])).toEqual([
      ['rollout.start', 'admin', 'admin'],
      ['rollout.pause', 'admin', 'admin'],
      ['rollout.resume', 'admin', 'admin'],
      ['rollout.promote', 'admin', 'admin'],
    ])
    expect(audit[3].before.weights).toEqual({ blue: 70, green: 30 })
    expect(audit[3].reason).toBe('promoted by admin at step 1 of 3 (weight 30)')
    expect(await metric(proxy, 'sluice_rollout_step{canary="green"}')).toBe(2)
  })

  it('abort rolls back: the canary loses its weight and a rollback is counted', async () => {
    // green is at 100 now: roll blue out as the canary and abort it.
    const started = await admin(proxy, 'POST', '/v1/rollout', { canary: 'blue', baseline: 'green', steps })
    expect(started.status).toBe(201)
    expect(started.body.weights).toEqual({ blue: 30, green: 70 })
    const aborted = await admin(proxy, 'POST', '/v1/rollout/abort')
    expect(aborted.status).toBe(200)
    expect(aborted.body.weights).toEqual({ blue: 0, green: 100 })
    expect(aborted.body.rollout).toMatchObject({
      status: 'rolled_back',
      reason: 'aborted by admin at step 1 of 3 (weight 30)',
    })
    expect(await auditEntry(proxy, 'rollout.abort')).toMatchObject({ source: 'admin', actor: 'admin' })
    expect(await metric(proxy, 'sluice_rollbacks_total{version="blue"}')).toBe(1)
    expectError(await admin(proxy, 'POST', '/v1/rollout/abort'), 409, 'SLUICE_ROLLOUT_CONFLICT')

    const history = (await admin(proxy, 'GET', '/v1/rollouts')).body as any[]
    expect(history.map((r) => [r.canary, r.outcome])).toEqual([
      ['green', 'promoted'],
      ['blue', 'rolled_back'],
    ])
    expect(history[1]).toMatchObject({
      baseline: 'green',
      actor: 'admin',
      onBreach: 'rollback',
      reason: 'aborted by admin at step 1 of 3 (weight 30)',
      steps: [{ step: 0, weight: 30 }],
      figures: {
        baseline: { requests: 0, errors: 0, errorRate: 0, p95Ms: 0 },
        canary: { requests: 0, errors: 0, errorRate: 0, p95Ms: 0 },
      },
    })
    expect(Date.parse(history[1].endedAt)).toBeGreaterThanOrEqual(Date.parse(history[1].startedAt))
  })
})

describe('sluice ctl rollout against the real proxy', () => {
  const ctl = (...args: string[]) =>
    ctlInProcess(args, { SLUICE_ADMIN_URL: proxy.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN })

  it('starts, pauses, resumes and aborts a rollout and prints the history', async () => {
    const start = await ctl('rollout', 'start', 'blue', '--baseline', 'green', '--steps', '10:60000,50,100')
    expect(start).toMatchObject({ code: 0, stderr: '' })
    expect(start.stdout).toMatch(/rollout started/)
    expect((await admin(proxy, 'GET', '/v1/state')).body.weights).toEqual({ blue: 10, green: 90 })

    const again = await ctl('rollout', 'start', 'blue', '--baseline', 'green', '--steps', '10,100')
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/SLUICE_ROLLOUT_CONFLICT/)

    expect(await ctl('rollout', 'pause')).toMatchObject({ code: 0 })
    expect((await ctl('rollout', 'status')).stdout).toMatch(/paused/)
    expect(await ctl('rollout', 'resume')).toMatchObject({ code: 0 })
    const abort = await ctl('rollout', 'abort')
    expect(abort.code).toBe(0)
    expect(abort.stdout).toMatch(/rollout aborted/)
    expect((await admin(proxy, 'GET', '/v1/state')).body.weights).toEqual({ blue: 0, green: 100 })

    const history = await ctl('rollout', 'history')
    expect(history.code).toBe(0)
    expect(history.stdout.trim().split('\n')).toHaveLength(4) // header and three rollouts
    expect(history.stdout).toMatch(/blue vs green.*rolled_back/)
  }, 60_000)
})
