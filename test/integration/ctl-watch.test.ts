import { spawn } from 'node:child_process'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildOnce, type CliResult, MAIN, runCli } from '../helpers/cli.js'
import { steadyLoad } from '../helpers/load.js'
import { admin, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { FAST_STEPS, type Recorded, recordedUpstream, rolloutProxy } from './rollout-fixture.js'

/**
 * `sluice ctl rollout status --watch` as a CI gate (README "sluice ctl"): the
 * built CLI, spawned, against a real proxy whose rollout really promotes,
 * rolls back or pauses under real traffic; the exit code is the gate.
 */

let cleanup: (() => Promise<void>)[] = []

afterEach(async () => {
  for (const c of cleanup.reverse()) await c()
  cleanup = []
})

async function scenario(
  greenErrorEvery: number,
  onBreach: 'rollback' | 'pause',
  steps: readonly { weight: number; holdMs: number; approval?: boolean }[] = FAST_STEPS,
): Promise<TestProxy> {
  const blue = await recordedUpstream('blue')
  const green = await recordedUpstream('green', { errorEvery: greenErrorEvery })
  const proxy = await rolloutProxy(blue, green, { analysis: { intervalMs: 200, windowMs: 10_000, minRequests: 30 } })
  const load = steadyLoad({ url: proxy.url, concurrency: 4, keyFor: () => undefined })
  cleanup.push(async () => {
    await load.stop()
    await proxy.stop()
    await Promise.all([blue, green].map((u: Recorded) => u.upstream.close()))
  })
  const started = await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps, onBreach })
  expect(started.status).toBe(201)
  return proxy
}

function watch(proxy: { adminUrl: string }, ...extra: string[]): Promise<CliResult> {
  return runCli(['ctl', 'rollout', 'status', '--watch', '--interval', '100', ...extra], {
    SLUICE_ADMIN_URL: proxy.adminUrl,
    SLUICE_ADMIN_TOKEN: TEST_TOKEN,
  }, 60_000)
}

describe('sluice ctl rollout status --watch', () => {
  beforeAll(() => buildOnce(), 180_000)

  it('prints each step, 1-based, and exits 0 when the rollout is promoted', async () => {
    // The first step awaits an approval, given only once the watch has printed it: no race with the CLI's start.
    const proxy = await scenario(0, 'rollback', [{ weight: 20, holdMs: 0, approval: true }, ...FAST_STEPS.slice(1)])
    const child = spawn(process.execPath, [MAIN, 'ctl', 'rollout', 'status', '--watch', '--interval', '100'], {
      env: { ...process.env, SLUICE_ADMIN_URL: proxy.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN },
    })
    cleanup.push(async () => void child.kill('SIGKILL'))
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
    await expect.poll(() => stdout, { timeout: 30_000 }).toContain('awaiting approval')
    expect(stdout.split('\n')[0]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}progressing {2}green vs blue {2}step 1 of 3 \(canary weight 20\)/)
    expect((await admin(proxy, 'POST', '/v1/rollout/approve')).status).toBe(200)
    expect(await exited).toBe(0)
    const lines = stdout.trim().split('\n')
    expect(stdout).toContain('step 2 of 3 (canary weight 50)')
    expect(lines.at(-1)).toContain('promoted')
    // A change is printed once, not once per poll: no line repeats the one before it. (A state may look as an
    // earlier one did: once approved, step 1 shows as it did before it awaited the approval, until it advances.)
    const shown = lines.map((l) => l.slice(22))
    expect(shown.filter((l, i) => i > 0 && l === shown[i - 1])).toEqual([])
    // Over, the rollout is reported at once with its outcome's code.
    const again = await watch(proxy)
    expect(again.code).toBe(0)
    expect(again.stdout.trim().split('\n')).toHaveLength(1)
  })

  it('exits 1 when the analysis rolls the canary back, with the reason', async () => {
    const proxy = await scenario(2, 'rollback')
    const r = await watch(proxy, '--json')
    expect(r.code).toBe(1)
    const changes = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { status: string; reason: string | null })
    expect(changes.at(-1)).toMatchObject({ status: 'rolled_back', reason: expect.any(String) })
  })

  it('exits 3 when the rollout pauses on a breach', async () => {
    const proxy = await scenario(2, 'pause')
    const r = await watch(proxy)
    expect(r.code).toBe(3)
    expect(r.stdout.trim().split('\n').at(-1)).toContain('paused')
  })

  it('exits 1 for an operator abort seen while watching', async () => {
    const proxy = await scenario(0, 'rollback', [
      { weight: 20, holdMs: 60_000 },
      { weight: 100, holdMs: 0 },
    ])
    const watching = watch(proxy)
    await expect.poll(async () => (await admin(proxy, 'GET', '/v1/state')).body.rollout.step, { timeout: 20_000 }).toBe(0)
    expect((await admin(proxy, 'POST', '/v1/rollout/abort')).status).toBe(200)
    const r = await watching
    expect(r.code).toBe(1)
    expect(r.stdout).toContain('rolled_back')
  })

  it('exits 4 when the admin API cannot be reached or refuses, JSON on stderr with --json', async () => {
    const closed = await runCli(['ctl', 'rollout', 'status', '--watch', '--json'], { SLUICE_ADMIN_URL: 'http://127.0.0.1:9' })
    expect(closed.code).toBe(4)
    expect(JSON.parse(closed.stderr)).toMatchObject({ error: { code: 'SLUICE_ADMIN_UNREACHABLE' } })
    const proxy = await scenario(0, 'rollback')
    const refused = await runCli(['ctl', 'rollout', 'status', '--watch', '--json'], {
      SLUICE_ADMIN_URL: proxy.adminUrl,
      SLUICE_ADMIN_TOKEN: 'wrong',
    })
    expect(refused.code).toBe(4)
    expect(JSON.parse(refused.stderr).error.code).toMatch(/^SLUICE_/)
  })
})
