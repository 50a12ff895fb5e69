import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { buildConfig } from '../../../src/config/load.js'
import { RolloutConflictError, RolloutInvalidError } from '../../../src/errors.js'
import { Sluice } from '../../../src/lifecycle/sluice.js'
import { RolloutDriver } from '../../../src/rollout/driver.js'
import { transition } from '../../../src/rollout/rollout-machine.js'
import { idleRollout } from '../../../src/rollout/rollout-state.js'
import { initialState } from '../../../src/state/desired.js'
import { MemoryStore } from '../../../src/state/memory-store.js'

/**
 * The driver on a real Sluice whose data path is not used: outcomes are
 * recorded straight into the analysis windows, and the test calls `tick()`
 * itself instead of waiting for the timer.
 */

const SLICE_MS = 50
const steps = [
  { weight: 10, holdMs: 0 },
  { weight: 50, holdMs: 0 },
  { weight: 100, holdMs: 0 },
]

let running: Sluice[] = []

async function proxy(extra: Record<string, unknown> = {}, store?: MemoryStore) {
  const config = buildConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      versions: {
        blue: { instances: [{ url: 'http://127.0.0.1:9' }] },
        green: { instances: [{ url: 'http://127.0.0.1:10' }] },
        red: { instances: [{ url: 'http://127.0.0.1:11' }] },
      },
      weights: { blue: 80, red: 20 },
      analysis: { intervalMs: SLICE_MS, windowMs: 5000, minRequests: 20 },
      outlier: { consecutiveFailures: 0 },
      ...extra,
    },
    undefined,
  )
  const s = new Sluice(config, { log: pino({ level: 'silent' }), ...(store ? { store } : {}) })
  const driver = new RolloutDriver(s)
  await s.start()
  running.push(s)
  /** Records n outcomes of a version, `errors` of them 500s. */
  const record = (version: string, n: number, errors = 0, latencyMs = 5) => {
    const inst = s.findVersion(version)!.instances[0]!
    for (let i = 0; i < n; i++) s.outcomes.end(inst, i < errors ? 500 : 200, latencyMs, false)
  }
  return { s, driver, record }
}

const nextSlice = () => new Promise((r) => setTimeout(r, SLICE_MS + 5))

afterEach(async () => {
  await Promise.all(running.map((s) => s.stop()))
  running = []
})

describe('rollout driver', () => {
  it('a start moves rollout and weights in one audited commit; versions it does not name get 0', async () => {
    const { s, driver } = await proxy()
    const before = s.desired.revision
    await driver.begin({ canary: 'green', baseline: 'blue', steps }, { actor: 'alice' })
    expect(s.desired.revision).toBe(before + 1)
    expect(s.desired.weights).toEqual({ blue: 90, green: 10, red: 0 })
    expect(s.desired.rollout).toMatchObject({ status: 'progressing', canary: 'green', step: 0, actor: 'alice' })
    const [entry] = await s.store.audit(1)
    expect(entry).toMatchObject({
      action: 'rollout.start',
      source: 'admin',
      actor: 'alice',
      before: { weights: { blue: 80, green: 0, red: 20 }, rollout: { status: 'idle' } },
      after: { weights: { blue: 90, green: 10, red: 0 }, rollout: { status: 'progressing', step: 0 } },
    })
    expect(entry!.reason).toContain('green against blue in steps 10, 50, 100')
  })

  it('missing fields come from the config, and without them the start is refused naming the field', async () => {
    const { s, driver } = await proxy()
    await expect(driver.begin({ canary: 'green' }, { actor: 'a' })).rejects.toMatchObject({
      constructor: RolloutInvalidError,
      path: 'baseline',
    })
    await expect(driver.begin({ canary: 'green', baseline: 'blue' }, { actor: 'a' })).rejects.toMatchObject({
      path: 'steps',
    })
    expect(s.desired.rollout).toBeNull()

    const configured = await proxy({ rollout: { baseline: 'blue', canary: 'green', steps, onBreach: 'pause' } })
    const state = await configured.driver.begin({}, { actor: 'a' })
    expect(state).toMatchObject({ baseline: 'blue', canary: 'green', onBreach: 'pause', steps })
    await expect(configured.driver.begin({}, { actor: 'a' })).rejects.toBeInstanceOf(RolloutConflictError)
  })

  it('a healthy canary steps on each interval with enough fresh samples and is promoted', async () => {
    const { s, driver, record } = await proxy()
    await driver.begin({ canary: 'green', baseline: 'blue', steps }, { actor: 'a' })
    await nextSlice()
    record('blue', 50)
    record('green', 10)
    expect((await driver.tick())?.outcome).toBe('wait')
    expect(s.desired.rollout).toMatchObject({ step: 0 })
    record('green', 20)
    expect((await driver.tick())?.outcome).toBe('pass')
    expect(s.desired.rollout).toMatchObject({ step: 1 })
    await nextSlice()
    record('blue', 50)
    record('green', 30)
    expect((await driver.tick())?.outcome).toBe('pass')
    expect(s.desired.rollout).toMatchObject({ status: 'promoted' })
    expect(s.desired.weights).toEqual({ blue: 0, green: 100, red: 0 })
    const audit = await s.store.audit(3)
    expect(audit.map((e) => [e.action, e.source])).toEqual([
      ['rollout.start', 'admin'],
      ['rollout.step', 'rollout'],
      ['rollout.promote', 'rollout'],
    ])
    expect(audit[1]!.reason).toMatch(/^to step 2 of 3: step 1 of 3 \(weight 10\) held 0 ms with no breach: canary error rate 0/)
    const [report] = await driver.reports()
    expect(report).toMatchObject({ outcome: 'promoted', canary: 'green', baseline: 'blue' })
    expect(report!.steps.map((x) => x.weight)).toEqual([10, 50, 100])
    // every recorded request after the rollout's first slice is in the report
    expect(report!.figures.canary.requests).toBe(60)
    expect(report!.figures.baseline.requests).toBe(100)
  })

  it('a breach rolls back at once, counts a rollback and archives the report with its reason', async () => {
    const { s, driver, record } = await proxy()
    await driver.begin({ canary: 'green', baseline: 'blue', steps }, { actor: 'a' })
    await nextSlice()
    record('blue', 100)
    record('green', 30, 9)
    const v = await driver.tick()
    expect(v).toMatchObject({ outcome: 'breach', figure: 'error_rate' })
    expect(s.desired.rollout).toMatchObject({ status: 'rolled_back' })
    expect(s.desired.weights).toEqual({ blue: 100, green: 0, red: 0 })
    const [entry] = await s.store.audit(1)
    expect(entry).toMatchObject({ action: 'rollout.rollback', source: 'analysis', actor: null })
    expect(entry!.reason).toMatch(/canary error rate 0\.3 exceeds baseline 0 \+ 0\.02 .*30 vs 100 requests\) at step 1 of 3/)
    expect(entry!.after).toMatchObject({ weights: { green: 0 }, rollout: { status: 'rolled_back' } })
    expect(await s.metrics.text()).toMatch(/sluice_rollbacks_total\{version="green"\} 1/)
    const [report] = await driver.reports()
    expect(report).toMatchObject({ outcome: 'rolled_back', reason: entry!.reason })
    expect(report!.figures.canary).toMatchObject({ requests: 30, errors: 9 })
    expect(report).not.toHaveProperty('totals')
  })

  it('a verdict computed before an operator pause never undoes the pause', async () => {
    const { s, driver, record } = await proxy()
    await driver.begin({ canary: 'green', baseline: 'blue', steps }, { actor: 'a' })
    await nextSlice()
    record('blue', 50)
    record('green', 30)
    const [paused, verdict] = await Promise.all([driver.command('pause', 'bob'), driver.tick()])
    expect(verdict?.outcome).toBe('pass')
    expect(paused.status).toBe('paused')
    expect(s.desired.rollout).toMatchObject({ status: 'paused', step: 0 })
    expect(s.desired.weights).toMatchObject({ green: 10 })
  })

  it('a mirror phase stores the mirror settings, and the mirror figures move it on', async () => {
    const mirror = { percent: 20, holdMs: 0, minRequests: 10 }
    const { s, driver } = await proxy({ rollout: { baseline: 'blue', canary: 'green', steps, mirror } })
    await driver.begin({}, { actor: 'a' })
    expect(s.desired.weights).toMatchObject({ blue: 100, green: 0 })
    expect(s.desired.mirror).toMatchObject({ version: 'green', percent: 20, methods: ['GET', 'HEAD'] })
    expect(s.desired.rollout).toMatchObject({ phase: 'mirror', step: -1 })
    await driver.feedMirrorFigures({ copied: 12, mismatches: 0, shadowP95Ms: 5, primaryP95Ms: 5 })
    expect(s.desired.rollout).toMatchObject({ phase: 'steps', step: 0 })
    expect(s.desired.mirror).toBeNull()
    expect(s.desired.weights).toMatchObject({ blue: 90, green: 10 })
  })

  it('autoStart starts the configured rollout, but not one the store shows already ran', async () => {
    const rollout = { baseline: 'blue', canary: 'green', steps, autoStart: true }
    const fresh = await proxy({ rollout })
    await fresh.driver.start()
    expect(fresh.s.desired.rollout).toMatchObject({ status: 'progressing', actor: null })
    const [entry] = await fresh.s.store.audit(1)
    expect(entry).toMatchObject({ action: 'rollout.start', source: 'rollout' })

    const store = new MemoryStore()
    const ended = transition(
      transition(idleRollout(), { type: 'start', baseline: 'blue', canary: 'green', steps }, 1).state,
      { type: 'promote' },
      2,
    ).state
    await store.init({
      ...initialState({ blue: 0, green: 100, red: 0 }),
      rollout: { ...ended },
    })
    const restarted = await proxy({ rollout }, store)
    await restarted.driver.start()
    expect(restarted.s.desired.rollout).toMatchObject({ status: 'promoted', startedAt: 1 })
  })

  it('a rollout found running in the store goes on with the totals of its stored record', async () => {
    const store = new MemoryStore()
    const now = Date.now()
    const state = transition(idleRollout(), { type: 'start', baseline: 'blue', canary: 'green', steps }, now).state
    await store.init({
      ...initialState({ blue: 90, green: 10, red: 0 }),
      rollout: { ...state },
    })
    const totals = {
      fedUntilMs: now,
      baseline: { requests: 500, errors: 0, latency: [] },
      canary: { requests: 40, errors: 1, latency: [] },
    }
    await store.saveRollout({ id: state.id!, totals })
    const { driver } = await proxy({}, store)
    expect((await driver.tick())?.outcome).toBe('wait')
    const [report] = await driver.reports()
    expect(report).toMatchObject({ id: state.id, outcome: 'progressing' })
    expect(report!.figures.canary).toMatchObject({ requests: 40, errors: 1 })
    expect(report!.figures.baseline.requests).toBe(500)
  })
})
