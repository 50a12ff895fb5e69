import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildOnce, type ServeProcess, startServe } from '../helpers/cli.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const TOKEN = 'stop-test-token'

/** `/hold` answers only on `release()`; everything else at once. */
function holding(name: string) {
  const held: ServerResponse[] = []
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    if (req.url === '/hold') {
      held.push(res)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
    res.end(JSON.stringify({ name }))
  }
  const release = () => {
    for (const res of held.splice(0)) {
      if (res.destroyed) continue
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
      res.end(JSON.stringify({ name, held: true }))
    }
  }
  return { held, handler, release }
}

async function readyz(adminPort: number): Promise<number> {
  const res = await request(`http://127.0.0.1:${adminPort}/readyz`)
  await res.body.dump()
  return res.statusCode
}

describe('the proxy stopped with SIGTERM under load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-stop-'))
  const blue = holding('blue')
  let up: TestUpstream
  let serve: ServeProcess | undefined

  function writeConfig(drainTimeoutMs: number): string {
    const file = join(dir, `sluice-${drainTimeoutMs}.json`)
    writeFileSync(
      file,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, token: TOKEN },
        versions: { blue: { instances: [{ url: up.url }] } },
        sticky: { keys: ['header:x-user-id'] },
        health: { intervalMs: 250, timeoutMs: 250 },
        drain: { timeoutMs: drainTimeoutMs },
        log: { level: 'info' },
      }),
    )
    return file
  }

  beforeAll(async () => {
    up = await startUpstream('blue', blue.handler)
    // Compiles dist/ when it is older than src/ (what `npx sluice` runs).
    await buildOnce()
  }, 180_000)
  afterEach(async () => {
    blue.release()
    await serve?.stop('SIGKILL')
    serve = undefined
  })
  afterAll(async () => {
    await up?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('lets every in-flight request complete with Connection: close, turns readyz 503 and exits 0', async () => {
    serve = await startServe(writeConfig(10_000))
    const s = serve
    await expect.poll(async () => (await readyz(s.adminPort)), { message: 'proxy ready' }).toBe(200)
    const load = recordedLoad({ url: s.url })
    await moreRequests(load.records, 200)
    const held = ['u1', undefined, 'u2', undefined].map((key) =>
      request(`${s.url}/hold`, { headers: key ? { 'x-user-id': key } : {} }).then(async (res) => ({
        status: res.statusCode,
        connection: res.headers.connection,
        body: await res.body.text(),
      })),
    )
    await expect.poll(() => blue.held.length, { message: 'four requests held by the upstream' }).toBe(4)

    const exit = s.stop('SIGTERM')
    // Stop issuing new requests: the ones in flight now are what must complete.
    const stopped = load.stop()
    await expect.poll(async () => (await readyz(s.adminPort)), { message: 'readyz 503 during the stop' }).toBe(503)
    blue.release()
    const results = await Promise.all(held)
    const records = await stopped
    const code = await exit

    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200])
    expect(results.map((r) => r.connection)).toEqual(['close', 'close', 'close', 'close'])
    expect(failed(records).length, describeFailures(records)).toBe(0)
    expect(code).toBe(0)
    expect(s.lines.some((l) => l.includes('"msg":"stopped"'))).toBe(true)
  })

  it('exits 0 within drain.timeoutMs when a request never finishes', async () => {
    serve = await startServe(writeConfig(300))
    const s = serve
    await expect.poll(async () => (await readyz(s.adminPort)), { message: 'proxy ready' }).toBe(200)
    const stuck = request(`${s.url}/hold`).then(
      (res) => res.body.text().then(() => res.statusCode),
      (err: unknown) => String(err),
    )
    await expect.poll(() => blue.held.length, { message: 'the request held by the upstream' }).toBe(1)
    // stop() sends SIGKILL (exit code null) if the process outlives 10 s.
    expect(await s.stop('SIGTERM', 10_000)).toBe(0)
    expect(await stuck).not.toBe(200)
  })
})
