import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCommand } from '../../src/cli/commands.js'
import { runCtl } from '../../src/cli/ctl.js'
import { buildOnce, inProcess, runCli } from '../helpers/cli.js'
import { admin, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { type Recorded, recordedUpstream, rolloutProxy } from './rollout-fixture.js'

/**
 * What a pipeline and a person see of `sluice` (README "sluice ctl"): help
 * on every command, JSON errors with --json, and `ctl` against a real proxy.
 */

async function ctl(argv: string[], env: NodeJS.ProcessEnv) {
  let stdout = ''
  let stderr = ''
  const code = await runCtl(argv, { env, stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) })
  return { code, stdout, stderr }
}

describe('--help', () => {
  beforeAll(() => buildOnce(), 180_000)

  it('sluice --help, spawned, answers on stdout with exit 0', async () => {
    const r = await runCli(['--help'], { SLUICE_ADMIN_URL: 'http://127.0.0.1:9' }, 10_000)
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    expect(r.stdout).toContain('usage: sluice <command>')
  })

  // The same entry as the binary's, without a Node start each (about 0.7 s of CPU): the
  // spawned test above covers what the process boundary adds.
  it.each([
    [['--help'], 'usage: sluice <command>'],
    [['serve', '--help'], 'usage: sluice serve --config FILE'],
    [['validate', '-h'], 'usage: sluice validate --config FILE'],
    // Starts nothing: no demo upstreams, no proxy on 8080.
    [['demo', '--help'], 'usage: sluice demo [--port PORT] [--admin-port PORT]'],
    [['ctl', '--help'], 'usage: sluice ctl <command>'],
    [['ctl', 'rollout', 'status', '--help'], 'rollout status [--watch] [--interval MS]'],
  ])('sluice %j answers on stdout with exit 0', async (args, first) => {
    const r = await inProcess((io) => runCommand(args, io), { SLUICE_ADMIN_URL: 'http://127.0.0.1:9' })
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    expect(r.stdout).toContain(first)
  })

  it.each([
    ['state'],
    ['weights'],
    ['drain'],
    ['undrain'],
    ['reload'],
    ['audit'],
    ['rollout'],
    ['rollout', 'start'],
    ['rollout', 'pause'],
    ['rollout', 'approve'],
    ['rollout', 'history'],
    ['mirror'],
    ['mirror', 'start'],
    ['instances', 'add'],
    ['help'],
  ])('sluice ctl %j --help names that command and sends nothing', async (...words) => {
    const r = await ctl([...words, '--help'], { SLUICE_ADMIN_URL: 'http://127.0.0.1:9' })
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    if (words[0] !== 'help') expect(r.stdout).toContain(`  ${words.join(' ')}`)
    expect(r.stdout).toContain('exit codes:')
  })

  it('a misspelt flag is a usage error (exit 2), as JSON with --json', async () => {
    const text = await ctl(['state', '--jsn'], {})
    expect(text.code).toBe(2)
    expect(text.stderr).toContain('error: unknown argument "--jsn"')
    const json = await ctl(['rollout', 'status', '--json', '--whatch'], {})
    expect(json.code).toBe(2)
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'SLUICE_USAGE', message: 'unknown argument "--whatch"' } })
    const misplaced = await ctl(['state', '--watch'], {})
    expect(misplaced.stderr).toContain('--watch does not apply to this command')
  })
})

describe('sluice ctl against a real proxy', () => {
  let blue: Recorded
  let green: Recorded
  let proxy: TestProxy
  let env: NodeJS.ProcessEnv

  beforeAll(async () => {
    ;[blue, green] = await Promise.all([recordedUpstream('blue'), recordedUpstream('green')])
    proxy = await rolloutProxy(blue, green)
    env = { SLUICE_ADMIN_URL: proxy.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN }
  })

  afterAll(async () => {
    await proxy?.stop()
    await Promise.all([blue?.upstream.close(), green?.upstream.close()])
  })

  it('state shows the per-version rate, and "-" for a version without requests', async () => {
    for (let i = 0; i < 20; i++) await (await fetch(proxy.url + '/')).text()
    const r = await ctl(['state'], env)
    expect(r.code).toBe(0)
    const analysis = r.stdout.slice(r.stdout.indexOf('analysis\n'))
    expect(analysis).toMatch(/VERSION +RATE +REQUESTS +ERRORS +ERROR RATE +P95/)
    expect(analysis).toMatch(/blue +\d+(\.\d)?\/s +20 +0 +0\.00% +\d+\.\d ms/)
    expect(analysis).toMatch(/green +0\.0\/s +0 +0 +- +-\n/)
    const json = await ctl(['state', '--json'], env)
    expect(JSON.parse(json.stdout).analysis.blue.requestsPerSec).toBeGreaterThan(0)
  })

  it('rollout status --json is the rollout alone; steps show 1-based; audit shows readable before/after', async () => {
    const start = await ctl(['rollout', 'start', 'green', '--baseline', 'blue', '--steps', '10:60000,50:60000,100'], env)
    expect({ code: start.code, stderr: start.stderr }).toEqual({ code: 0, stderr: '' })
    expect(start.stdout).toMatch(/step +1 of 3 \(canary weight 10\)/)
    const status = await ctl(['rollout', 'status', '--json'], env)
    const rollout = JSON.parse(status.stdout)
    expect(rollout).toMatchObject({ status: 'progressing', canary: 'green', baseline: 'blue', step: 0 })
    expect(rollout.weights ?? rollout.versions).toBeUndefined()
    const audit = await ctl(['audit'], env)
    const line = audit.stdout.split('\n').find((l) => l.includes('rollout.start'))
    expect(line).toContain('blue=100 green=0, rollout idle -> blue=90 green=10, rollout progressing step 1')
    expect(line).not.toContain('…')
    expect((await admin(proxy, 'POST', '/v1/rollout/abort')).status).toBe(200)
  })

  it('with --json, an API error is the API error body on stderr', async () => {
    const r = await ctl(['weights', 'blue=50', 'green=40', '--json'], env)
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(JSON.parse(r.stderr).error.code).toMatch(/^SLUICE_/)
    const refused = await ctl(['state', '--json'], { ...env, SLUICE_ADMIN_TOKEN: 'wrong' })
    expect(refused.code).toBe(1)
    expect(JSON.parse(refused.stderr).error.code).toMatch(/^SLUICE_/)
  })
})
