import { describe, expect, it } from 'vitest'
import { traffic, useStateFileFixture } from './state-file-fixture.js'

describe('state.file: a running rollout survives SIGKILL', () => {
  const fixture = useStateFileFixture(['analysis: { intervalMs: 100, windowMs: 5000, minRequests: 20 }'])

  it('resumes at its step after a start, its hold starting again, and goes on to promotion', async () => {
    const f = fixture()
    const HOLD_MS = 2500
    const a = await f.start()
    const steps = [
      { weight: 10, holdMs: 0 },
      { weight: 50, holdMs: HOLD_MS },
      { weight: 100, holdMs: 0 },
    ]
    const started = await a.admin('POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps })
    expect(started.status).toBe(201)
    const load = traffic(a)
    await expect
      .poll(async () => (await a.admin('GET', '/v1/state')).body.rollout.step, { timeout: 15_000, interval: 50 })
      .toBe(1)
    const before = (await a.admin('GET', '/v1/state')).body.rollout
    expect(await a.stop('SIGKILL')).toBe(null)
    await load.stop()

    const restartAt = Date.now()
    const b = await f.start()
    try {
      const state = (await b.admin('GET', '/v1/state')).body
      expect(state.rollout).toMatchObject({ id: before.id, status: 'progressing', step: 1, phase: 'steps' })
      expect(state.weights).toEqual({ blue: 50, green: 50 })
      expect(state.rollout.stepStartedAt).toBe(before.stepStartedAt)
      expect(state.rollout.holdStartedAt).toBeGreaterThanOrEqual(restartAt)
      // The record saved just before the kill may lag the state by a step; the driver's first tick catches it up.
      await expect
        .poll(async () => {
          const history = (await b.admin('GET', '/v1/rollouts')).body as any[]
          return history.map((r) => [r.id, r.outcome, r.steps.map((s: { step: number }) => s.step)])
        })
        .toEqual([[before.id, 'progressing', [0, 1]]])
      const audit = (await b.admin('GET', '/v1/audit')).body as any[]
      expect(audit.slice(-2).map((e) => [e.action, e.source])).toEqual([
        ['start', 'system'],
        ['rollout.restart', 'system'],
      ])
      expect(audit.at(-1).reason).toContain(`the hold of ${HOLD_MS} ms starts again`)

      // Driven on from here: promoted once the hold has passed again, counted from the start.
      const load2 = traffic(b)
      await expect
        .poll(async () => (await b.admin('GET', '/v1/state')).body.rollout.status, { timeout: 20_000, interval: 100 })
        .toBe('promoted')
      await load2.stop()
      const done = (await b.admin('GET', '/v1/state')).body
      expect(done.weights).toEqual({ blue: 0, green: 100 })
      expect(done.rollout.endedAt - state.rollout.holdStartedAt).toBeGreaterThanOrEqual(HOLD_MS)
      const after = (await b.admin('GET', '/v1/rollouts')).body as any[]
      expect(after.map((r) => [r.id, r.outcome])).toEqual([[before.id, 'promoted']])
    } finally {
      expect(await b.stop('SIGTERM')).toBe(0)
    }
  })
})
