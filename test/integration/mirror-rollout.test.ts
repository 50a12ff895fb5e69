import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type LoadResult, steadyLoad } from '../helpers/load.js'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { admin, type TestProxy } from '../helpers/proxy.js'
import { type TestUpstream } from '../helpers/upstream.js'
import { auditEntry, FAST_STEPS } from './rollout-fixture.js'

/** Answers `{"path":...}` (plus `extra`) after `delayMs`, naming itself in x-upstream so tests see who served users. */
function app(name: string, opts: { extra?: Record<string, unknown>; delayMs?: number } = {}) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
      res.end(JSON.stringify({ path: req.url, ...opts.extra }))
    }
    if (opts.delayMs) setTimeout(answer, opts.delayMs)
    else answer()
  }
}

const rollout = async (p: TestProxy) => (await admin(p, 'GET', '/v1/state')).body.rollout

describe('the mirror phase of a rollout', () => {
  let green: TestUpstream
  let p: TestProxy
  let load: { stop(): Promise<LoadResult>; result: LoadResult } | undefined
  /** Stops the background load once and returns what it saw. */
  async function stopLoad(): Promise<LoadResult> {
    const l = load!
    load = undefined
    return l.stop()
  }
  let f: BlueGreen | undefined
  afterEach(async () => {
    if (load) await stopLoad()
    await f?.close()
  })

  async function setup(greenOpts: Parameters<typeof app>[1], phase: Record<string, unknown> = {}) {
    f = await blueGreen(
      {
        weights: { blue: 100 },
        sticky: { keys: ['header:x-user-id'] },
        analysis: { intervalMs: 200, windowMs: 10_000, minRequests: 50 },
        outlier: { consecutiveFailures: 0 },
        // The comparison settings of the mirror phase (percent 0: no mirroring outside a rollout).
        mirror: { version: 'green', percent: 0, ignore: ['x-upstream'] },
        rollout: {
          baseline: 'blue',
          canary: 'green',
          steps: FAST_STEPS,
          mirror: { percent: 100, holdMs: 600, maxMismatchRate: 0.05, maxP95Ratio: 10, minRequests: 20, ...phase },
        },
      },
      { blue: app('blue'), green: app('green', greenOpts) },
    )
    ;({ green, proxy: p } = f)
    load = steadyLoad({ url: p.url, concurrency: 2, maxPerLoop: 20_000 })
    expect((await admin(p, 'POST', '/v1/rollout', {})).status).toBe(201)
    const r = await rollout(p)
    expect(r).toMatchObject({ status: 'progressing', phase: 'mirror', canary: 'green' })
    expect((await admin(p, 'GET', '/v1/state')).body.weights).toEqual({ blue: 100, green: 0 })
  }

  it('moves to the first weighted step when the shadow matches and keeps up', async () => {
    await setup({})
    const s = await vi.waitFor(
      async () => {
        const st = (await admin(p, 'GET', '/v1/state')).body
        expect(st.rollout.phase, 'the end of the mirror phase').not.toBe('mirror')
        return st
      },
      { timeout: 20_000, interval: 20 },
    )
    // During the phase green only took copies; now it takes its first weighted share and mirroring stops.
    expect(s.rollout.status).toMatch(/progressing|promoted/)
    expect(s.mirror).toBeNull()
    const step = await auditEntry(p, 'rollout.step')
    expect(step.reason).toMatch(/^mirror phase held 600 ms within limits: mirror mismatch rate 0 within 0.05/)
    expect((await stopLoad()).failed).toBe(0)
  })

  it('rolls back, having served no user, when the shadow answers differently', async () => {
    await setup({ extra: { price: 'changed' } })
    await expect
      .poll(async () => (await rollout(p)).status, { message: 'the rollback', timeout: 20_000 })
      .toBe('rolled_back')
    const result = await stopLoad()
    const s = (await admin(p, 'GET', '/v1/state')).body
    expect(s.rollout.reason).toMatch(/^mirror mismatch rate 1 exceeds 0.05 \(\d+ of \d+ copies\) in the mirror phase/)
    expect(s.weights).toEqual({ blue: 100, green: 0 })
    expect(s.mirror).toBeNull()
    expect(result.failed).toBe(0)
    expect(result.byBody.get('green') ?? 0).toBe(0)
    expect(result.byBody.get('blue')).toBe(result.ok)
    expect(green.hits).toBeGreaterThanOrEqual(20)
  })

  it('rolls back, having served no user, when the shadow is too slow', async () => {
    // A ratio gate needs room on a loaded machine: 1 s against a user-facing p95 of well under 333 ms.
    await setup({ delayMs: 1000 }, { maxP95Ratio: 3 })
    await expect
      .poll(async () => (await rollout(p)).status, { message: 'the rollback', timeout: 20_000 })
      .toBe('rolled_back')
    const result = await stopLoad()
    const s = (await admin(p, 'GET', '/v1/state')).body
    expect(s.rollout.reason).toMatch(/^shadow p95 \d+\.\d ms exceeds primary p95 \d+\.\d ms x 3/)
    expect(result.byBody.get('green') ?? 0).toBe(0)
    expect(result.failed).toBe(0)
  })

  it('owns mirroring while it lasts: PUT /v1/mirror answers 409 until the rollout ends', async () => {
    await setup({}, { holdMs: 60_000 })
    const refused = await admin(p, 'PUT', '/v1/mirror', null)
    expect(refused.status).toBe(409)
    expect(refused.body.error.code).toBe('SLUICE_MIRROR_CONFLICT')
    expect((await admin(p, 'GET', '/v1/state')).body.mirror).toMatchObject({ version: 'green', percent: 100 })
    expect((await admin(p, 'POST', '/v1/rollout/abort')).status).toBe(200)
    expect((await admin(p, 'GET', '/v1/state')).body.mirror).toBeNull()
    expect((await admin(p, 'PUT', '/v1/mirror', { version: 'green', percent: 5 })).status).toBe(200)
    expect((await stopLoad()).failed).toBe(0)
  })
})
