import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildOnce, MAIN, ROOT } from '../helpers/cli.js'

/**
 * `sluice demo` as a person runs it (README "Try it"): the banner with the
 * URLs, then every change as it happens, and Ctrl-C ends it with exit 0.
 */
describe('sluice demo', () => {
  let child: ReturnType<typeof spawn> | undefined
  let stdout = ''
  let exited: Promise<number | null>

  beforeAll(async () => {
    await buildOnce()
    child = spawn(process.execPath, [MAIN, 'demo', '--port', '0', '--admin-port', '0'], { cwd: ROOT })
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    exited = new Promise((resolve) => child!.on('exit', (code) => resolve(code)))
  }, 180_000)

  afterAll(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  it('prints the banner, then weight changes and a rollout as they happen, and stops on SIGINT', async () => {
    await expect.poll(() => stdout, { timeout: 20_000 }).toContain('Changes show below as they happen')
    const admin = /admin API +(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!
    const proxy = /proxy +(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!
    const put = await fetch(`${admin}/v1/weights`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ blue: 50, green: 50 }),
    })
    expect(put.status).toBe(200)
    await expect
      .poll(() => stdout, { timeout: 10_000 })
      .toMatch(/\d\d:\d\d:\d\dZ {2}weights by admin \(anonymous\): blue=80 green=20 canary=0 -> blue=50 green=50 canary=0\n/)
    const start = await fetch(`${admin}/v1/rollout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ canary: 'green', steps: [{ weight: 30, holdMs: 60_000 }, { weight: 100 }] }),
    })
    expect(start.status).toBe(201)
    await expect.poll(() => stdout, { timeout: 10_000 }).toMatch(/rollout\.start by admin \(anonymous\): .*rollout progressing step 1/)
    expect((await fetch(proxy + '/')).status).toBe(200)
    child!.kill('SIGINT')
    expect(await exited).toBe(0)
  })
})
