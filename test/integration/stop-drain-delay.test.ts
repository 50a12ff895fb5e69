import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildOnce, type ServeProcess, startServe } from '../helpers/cli.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

type Answer = { status: number; connection: string | undefined; at: number } | { error: string; at: number }

/** One request on a connection of its own (no agent): shows whether the listener still accepts. */
function fresh(url: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = get(url, { agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, at: Date.now() }))
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, at: Date.now() }))
  })
}

async function readyz(adminPort: number): Promise<number> {
  const a = await fresh(`http://127.0.0.1:${adminPort}/readyz`)
  return 'status' in a ? a.status : 0
}

describe('drain.delayMs: stopping behind a load balancer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-delay-'))
  let up: TestUpstream
  let serve: ServeProcess | undefined

  function writeConfig(delayMs: number): string {
    const file = join(dir, `sluice-${delayMs}.json`)
    writeFileSync(
      file,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, token: 'delay-test-token' },
        versions: { blue: { instances: [{ url: up.url }] } },
        health: { intervalMs: 250, timeoutMs: 250 },
        drain: { delayMs, timeoutMs: 5000 },
        log: { level: 'info' },
      }),
    )
    return file
  }

  beforeAll(async () => {
    up = await startUpstream('blue')
    await buildOnce()
  }, 180_000)
  afterEach(async () => {
    await serve?.stop('SIGKILL')
    serve = undefined
  })
  afterAll(async () => {
    await up?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('on SIGTERM turns /readyz 503 at once, keeps accepting and serving for the delay, then exits 0', async () => {
    const delayMs = 1500
    serve = await startServe(writeConfig(delayMs))
    const s = serve
    await expect.poll(() => readyz(s.adminPort)).toBe(200)
    expect(await fresh(`${s.url}/`)).toMatchObject({ status: 200 })

    const signalledAt = Date.now()
    const exit = s.stop('SIGTERM')
    await expect.poll(() => readyz(s.adminPort)).toBe(503)
    const notReadyAt = Date.now()

    // New connections, one after another, until the listener refuses one.
    const answers: Answer[] = []
    for (;;) {
      const a = await fresh(`${s.url}/`)
      answers.push(a)
      if ('error' in a) break
    }
    const served = answers.filter((a): a is Extract<Answer, { status: number }> => 'status' in a)
    const refused = answers.at(-1)!

    expect(notReadyAt - signalledAt).toBeLessThan(delayMs)
    expect(served.length).toBeGreaterThan(0)
    expect(served.every((a) => a.status === 200)).toBe(true)
    expect(served.every((a) => a.connection === 'close')).toBe(true)
    // Served through the whole delay: the last success came at least delayMs after the signal.
    expect(served.at(-1)!.at - signalledAt).toBeGreaterThanOrEqual(delayMs)
    // A connect that raced the listener's close sits in the kernel's accept queue and is reset instead.
    expect(['ECONNREFUSED', 'ECONNRESET']).toContain('error' in refused ? refused.error : 'served')
    expect(await exit).toBe(0)
    expect(s.lines.some((l) => l.includes('drain delay over'))).toBe(true)
    expect(s.lines.some((l) => l.includes('"msg":"stopped"'))).toBe(true)
  })

  it.each(['SIGTERM', 'SIGINT'] as const)('a second signal (%s) ends the delay at once and the stop exits 0', async (second) => {
    serve = await startServe(writeConfig(120_000))
    const s = serve
    await expect.poll(() => readyz(s.adminPort)).toBe(200)
    const exit = s.stop('SIGTERM')
    await expect.poll(() => readyz(s.adminPort)).toBe(503)
    // The body says why, for whoever reads the probe's answer.
    expect(await (await fetch(`http://127.0.0.1:${s.adminPort}/readyz`)).json()).toEqual({ status: 'stopping' })
    expect(await fresh(`${s.url}/`)).toMatchObject({ status: 200, connection: 'close' })
    s.child.kill(second)
    // Well under the two-minute delay (stop() sends SIGKILL, exit code null, after 15 s).
    expect(await exit).toBe(0)
    expect(s.lines.some((l) => l.includes('drain delay over'))).toBe(true)
  })
})
