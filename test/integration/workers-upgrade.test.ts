import { Client } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { blueGreen } from '../helpers/blue-green.js'
import { ctlInProcess } from '../helpers/cli.js'
import { type LoadResult, steadyLoad } from '../helpers/load.js'
import { admin, TEST_TOKEN } from '../helpers/proxy.js'
import { rawClient, responses } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { alive, logLines, startWorkers, type WorkersProxy } from '../helpers/workers.js'
import { nextMessage, openClient, startWsUpstream, whenClosed, wsUrl } from '../helpers/ws-upstream.js'

/**
 * sluice replacing its own workers (README "Workers and self-upgrade"):
 * SIGUSR2, POST /v1/restart and `sluice ctl restart` under a steady
 * keep-alive load, a worker killed with kill -9, and a primary killed.
 */

type Workers = { id: number; pid: number; generation: number }[]

async function state(p: WorkersProxy): Promise<{ workers: Workers; restart: { status: string; generation: number } }> {
  return (await admin(p, 'GET', '/v1/state')).body
}

async function pidsOf(p: WorkersProxy): Promise<number[]> {
  return (await state(p)).workers.map((w) => w.pid)
}

function versions(blue: TestUpstream, green: TestUpstream) {
  return { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } }
}

/** Runs `during` under a steady load; resolves with the load's result once `more` further requests passed after it. */
async function underLoad(p: WorkersProxy, during: () => Promise<void>, more = 300): Promise<LoadResult> {
  const load = steadyLoad({ url: p.url, concurrency: 8 })
  try {
    await expect.poll(() => load.result.ok, { timeout: 10_000 }).toBeGreaterThan(200)
    await during()
    const after = load.result.ok
    await expect.poll(() => load.result.ok, { timeout: 10_000 }).toBeGreaterThan(after + more)
  } finally {
    await load.stop()
  }
  return load.result
}

describe('self-upgrade: every worker replaced, one at a time, nothing failed', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let p: WorkersProxy
  let raw: Record<string, unknown>

  beforeAll(async () => {
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    raw = {
      workers: 2,
      versions: versions(blue, green),
      weights: { blue: 50, green: 50 },
      sticky: { keys: ['header:x-user-id'] },
      health: { intervalMs: 250, timeoutMs: 200 },
      drain: { timeoutMs: 5_000 },
    }
    p = await startWorkers(raw)
  }, 180_000)
  afterAll(async () => {
    await p?.close()
    await blue?.close()
    await green?.close()
  })

  it('SIGUSR2 under load: new workers serve before the old ones stop, 0 failed requests', async () => {
    const before = await pidsOf(p)
    const result = await underLoad(p, async () => {
      process.kill(p.serve.pid, 'SIGUSR2')
      await expect
        .poll(async () => (await state(p)).restart, { timeout: 30_000 })
        .toEqual({ status: 'idle', generation: 2 })
      const after = await pidsOf(p)
      expect(after).toHaveLength(2)
      for (const pid of after) expect(before).not.toContain(pid)
      await expect.poll(() => before.filter(alive), { timeout: 10_000 }).toEqual([])
    })
    expect(result.failures).toEqual([])
    expect(result.failed).toBe(0)
    // Paced: the second fresh worker was started only after the first retired one had exited.
    type Line = { msg?: string; time: string; worker?: number; generation?: number; startMs?: number }
    const log = logLines<Line>(p.serve.lines)
    const firstRetired = log.find((l) => l.msg === 'worker retiring')!.worker
    const exited = log.find((l) => l.msg === 'worker exited' && l.worker === firstRetired)!
    const serving = log.filter((l) => l.msg === 'worker serving' && l.generation === 2)
    expect(serving).toHaveLength(2)
    expect(Date.parse(serving[1]!.time) - serving[1]!.startMs!).toBeGreaterThanOrEqual(Date.parse(exited.time))
    // Counters never go down: the retired workers' counts are kept, so every request is counted once.
    const counted = async () => {
      const text = await (await fetch(`${p.adminUrl}/metrics`)).text()
      return text
        .split('\n')
        .filter((l) => l.startsWith('sluice_requests_total{'))
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
    }
    await expect.poll(counted).toBe(result.sent)
    const audit = (await admin(p, 'GET', '/v1/audit')).body as { action: string; source: string; actor: string }[]
    expect(audit.filter((e) => e.action === 'restart')).toEqual([
      expect.objectContaining({ action: 'restart', source: 'signal', actor: 'SIGUSR2' }),
    ])
  })

  it('POST /v1/restart answers 202 (409 while one runs) and `sluice ctl restart` does the same, 0 failed', async () => {
    const result = await underLoad(p, async () => {
      const r = await admin(p, 'POST', '/v1/restart')
      expect(r.status).toBe(202)
      expect(r.body.restart).toEqual({ status: 'running', generation: 3 })
      const again = await admin(p, 'POST', '/v1/restart')
      expect(again.status).toBe(409)
      await expect
        .poll(async () => (await state(p)).restart, { timeout: 30_000 })
        .toEqual({ status: 'idle', generation: 3 })

      const ctl = await ctlInProcess(['restart'], { SLUICE_ADMIN_URL: p.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN })
      expect(ctl.stderr).toBe('')
      expect(ctl.code).toBe(0)
      expect(ctl.stdout).toMatch(/restart begun/)
      await expect
        .poll(async () => (await state(p)).restart, { timeout: 30_000 })
        .toEqual({ status: 'idle', generation: 4 })
      expect((await state(p)).workers.map((w) => w.generation)).toEqual([4, 4])
    })
    expect(result.failures).toEqual([])
    expect(result.failed).toBe(0)
    const audit = (await admin(p, 'GET', '/v1/audit')).body as { action: string; source: string; actor: string }[]
    expect(audit.filter((e) => e.action === 'restart').map((e) => [e.source, e.actor])).toEqual([
      ['signal', 'SIGUSR2'],
      ['admin', 'admin'],
      ['admin', 'admin'],
    ])
  })

  it('restarts with the config on disk; an invalid one is refused with its problems and no worker changes', async () => {
    p.rewrite({ ...raw, weights: { blue: 50, nosuch: 50 } })
    const before = await pidsOf(p)
    const refused = await admin(p, 'POST', '/v1/restart')
    expect(refused.status).toBe(400)
    expect(JSON.stringify(refused.body)).toMatch(/nosuch/)
    expect(await pidsOf(p)).toEqual(before)
    expect((await state(p)).restart.status).toBe('idle')

    // A valid change on disk: the new workers run it (blue only).
    p.rewrite({ ...raw, weights: { blue: 100, green: 0 } })
    expect((await admin(p, 'POST', '/v1/restart')).status).toBe(202)
    await expect.poll(async () => (await state(p)).restart.status, { timeout: 30_000 }).toBe('idle')
    expect((await admin(p, 'GET', '/v1/state')).body.weights).toEqual({ blue: 100, green: 0 })
  })

  it('a worker killed with kill -9 under load is replaced; only its in-flight requests may fail', async () => {
    const [victim, other] = await pidsOf(p)
    // A connection the primary was handing to the victim as it died stays open in node:cluster's primary
    // (README, "Workers and self-upgrade"): the client's own timeout ends it, as a real client's would.
    const load = steadyLoad({ url: p.url, concurrency: 8, timeoutMs: 3_000 })
    let sentAtReplacement: number
    try {
      await expect.poll(() => load.result.ok, { timeout: 10_000 }).toBeGreaterThan(200)
      process.kill(victim!, 'SIGKILL')
      // Replaced: two workers again, the survivor and a new one.
      await expect
        .poll(async () => (await pidsOf(p)).filter((pid) => pid !== victim && pid !== other).length, {
          timeout: 10_000,
        })
        .toBe(1)
      expect(await pidsOf(p)).toContain(other)
      sentAtReplacement = load.result.sent
      const after = load.result.ok
      await expect.poll(() => load.result.ok, { timeout: 10_000 }).toBeGreaterThan(after + 300)
    } finally {
      await load.stop()
    }
    // At most one request per load connection was in flight on the killed worker,
    // and every request sent once it was replaced succeeded.
    expect(load.result.failed, load.result.failures.join('\n')).toBeLessThanOrEqual(8)
    expect(load.result.failedAt.filter((seq) => seq >= sentAtReplacement)).toEqual([])
    const metrics = () => fetch(`${p.adminUrl}/metrics`).then((r) => r.text())
    expect(await metrics()).toMatch(/^sluice_worker_restarts_total 1$/m)
    await expect.poll(metrics).toMatch(/^sluice_workers 2$/m)
  })

  it('a primary killed with kill -9 takes its workers with it', async () => {
    const pids = await pidsOf(p)
    await p.serve.stop('SIGKILL')
    await expect.poll(() => pids.filter(alive), { timeout: 15_000 }).toEqual([])
  })
})

describe('self-upgrade with one worker (`serve --workers 1`)', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let p: WorkersProxy | undefined
  afterEach(async () => {
    await p?.close()
    await blue?.close()
    await green?.close()
  })

  it('SIGUSR2 hands over to a fresh worker with 0 failed requests', async () => {
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    p = await startWorkers({ versions: versions(blue, green), weights: { blue: 50, green: 50 } }, ['--workers', '1'])
    const proxy = p
    const [before] = await pidsOf(proxy)
    const result = await underLoad(proxy, async () => {
      process.kill(proxy.serve.pid, 'SIGUSR2')
      await expect
        .poll(async () => (await state(proxy)).restart, { timeout: 30_000 })
        .toEqual({ status: 'idle', generation: 2 })
      const after = await pidsOf(proxy)
      expect(after).toHaveLength(1)
      expect(after).not.toContain(before)
    })
    expect(result.failures).toEqual([])
    expect(result.failed).toBe(0)
  })

  it('the retiring worker lets its kept-alive clients go one by one over about a second, not all at once', async () => {
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    p = await startWorkers({ versions: versions(blue, green), weights: { blue: 100, green: 0 } }, ['--workers', '1'])
    const proxy = p
    // Twenty kept-alive clients in a tight loop; each notes when the old worker answered it with Connection: close.
    const clients = Array.from({ length: 20 }, () => new Client(proxy.url, { pipelining: 1 }))
    const closedAt: number[] = []
    let running = true
    let answered = 0
    const loops = clients.map(async (client) => {
      let seen = false
      while (running) {
        const res = await client.request({ path: '/', method: 'GET' })
        await res.body.dump()
        expect(res.statusCode).toBe(200)
        answered++
        if (!seen && res.headers.connection === 'close') {
          seen = true
          closedAt.push(performance.now())
        }
      }
    })
    try {
      await expect.poll(() => answered).toBeGreaterThan(100)
      expect(closedAt).toEqual([])
      process.kill(proxy.serve.pid, 'SIGUSR2')
      await expect.poll(() => closedAt.length, { timeout: 30_000 }).toBe(clients.length)
    } finally {
      running = false
      await Promise.all(loops)
      await Promise.all(clients.map((c) => c.close()))
    }
    // Twenty moments spread over the second (RETIRE_SPREAD_MS) all but never fall within 300 ms; all at once, within a few ms.
    expect(Math.max(...closedAt) - Math.min(...closedAt)).toBeGreaterThan(300)
  })
})

describe('idle kept-alive connections across a self-upgrade', () => {
  let blue: TestUpstream | undefined
  let p: WorkersProxy | undefined
  afterAll(async () => {
    await p?.close()
    await blue?.close()
  })

  it('the retiring worker never closes one under its client: the next request is served, else clientIdleMs ends it', async () => {
    blue ??= await startUpstream('blue')
    const idleMs = 10_000
    p = await startWorkers(
      { versions: { blue: { instances: [{ url: blue.url }] } }, timeouts: { clientIdleMs: idleMs } },
      ['--workers', '1'],
    )
    const proxy = p
    const [old] = await pidsOf(proxy)
    const port = Number(new URL(proxy.url).port)
    const GET = 'GET / HTTP/1.1\r\nHost: sluice.test\r\n\r\n'
    // Two connections to the old worker, answered and then idle: one will send again, one never will.
    const [again, silent] = await Promise.all([rawClient(port), rawClient(port)])
    for (const c of [again, silent]) {
      c.socket.write(GET)
      await expect.poll(() => responses(c.text()).length).toBe(1)
      // The hint that tells a client such as undici to stop reusing it before the proxy would close it.
      expect(responses(c.text())[0]).toMatch(new RegExp(`keep-alive: timeout=${idleMs / 1000}`, 'i'))
    }
    const silentIdleSince = performance.now()
    process.kill(proxy.serve.pid, 'SIGUSR2')
    await expect
      .poll(async () => (await state(proxy)).restart, { timeout: 30_000 })
      .toEqual({ status: 'idle', generation: 2 })
    expect(await pidsOf(proxy)).not.toContain(old)
    // What is asserted is that nothing happens for a while: the old worker's spread (a second from its retiring)
    // and the stop's idle grace pass, and a second more. Before, it closed each idle connection there, which
    // resets a request its client may be writing at that instant.
    type Line = { msg?: string; time: string }
    const retiring = () => logLines<Line>(proxy.serve.lines).find((l) => l.msg === 'worker retiring')
    await expect.poll(retiring).toBeDefined()
    await new Promise((resolve) => setTimeout(resolve, Date.parse(retiring()!.time) + 2_250 - Date.now()))
    expect([again.closedAt(), silent.closedAt()]).toEqual([undefined, undefined])
    expect(alive(old!)).toBe(true)

    again.socket.write(GET)
    await again.closed
    const second = responses(again.text())[1]
    expect(second).toMatch(/^200 /)
    expect(second).toMatch(/connection: close/i)

    // The silent one is closed as any idle connection is, at clientIdleMs (Node adds up to a second), and only then
    // does the old worker exit.
    await silent.closed
    expect(silent.closedAt()! - silentIdleSince).toBeGreaterThanOrEqual(idleMs - 50)
    expect(responses(silent.text())).toHaveLength(1)
    await expect.poll(() => alive(old!), { timeout: 10_000 }).toBe(false)
  }, 60_000)

  it('a stop during a retire closes the idle ones at once: the old worker exits by itself, not killed at the grace', async () => {
    await p?.close()
    blue ??= await startUpstream('blue')
    p = await startWorkers(
      {
        versions: { blue: { instances: [{ url: blue.url }] } },
        timeouts: { clientIdleMs: 60_000 },
        drain: { timeoutMs: 3_000 },
      },
      ['--workers', '1'],
    )
    const proxy = p
    const [old] = await pidsOf(proxy)
    const idle = await rawClient(proxy.serve.port)
    idle.socket.write('GET / HTTP/1.1\r\nHost: sluice.test\r\n\r\n')
    await expect.poll(() => responses(idle.text()).length).toBe(1)
    process.kill(proxy.serve.pid, 'SIGUSR2')
    await expect
      .poll(async () => (await state(proxy)).restart, { timeout: 30_000 })
      .toEqual({ status: 'idle', generation: 2 })
    expect(alive(old!)).toBe(true)
    // The primary stops every worker, the retiring one too: it need not wait for its client any longer.
    expect(await proxy.serve.stop('SIGTERM', 30_000)).toBe(0)
    await idle.closed
    type Line = { msg?: string; workerPid?: number; code?: number | null; signal?: string | null }
    const exits = logLines<Line>(proxy.serve.lines)
    expect(exits.find((l) => l.msg === 'worker exited' && l.workerPid === old)).toMatchObject({ code: 0, signal: null })
  }, 60_000)
})

describe('a WebSocket across a self-upgrade', () => {
  it('keeps relaying on the old worker until drain.timeoutMs, then gets 1001; new ones go to the new worker', async () => {
    const up = await startWsUpstream('blue')
    const drainMs = 3_000
    const p = await startWorkers({
      workers: 1,
      versions: { blue: { instances: [{ url: up.url }] } },
      drain: { timeoutMs: drainMs },
    })
    try {
      const ws = await openClient(wsUrl(p.url))
      const closed = whenClosed(ws)
      ws.send('before')
      expect((await nextMessage(ws)).data.toString()).toBe('before')
      const [old] = await pidsOf(p)
      const signalledAt = Date.now()
      process.kill(p.serve.pid, 'SIGUSR2')
      await expect
        .poll(async () => (await state(p)).restart, { timeout: 30_000 })
        .toEqual({ status: 'idle', generation: 2 })
      // The old worker no longer accepts but still relays its WebSocket.
      expect(alive(old!)).toBe(true)
      ws.send('during')
      expect((await nextMessage(ws)).data.toString()).toBe('during')
      const fresh = await openClient(wsUrl(p.url))
      fresh.send('new')
      expect((await nextMessage(fresh)).data.toString()).toBe('new')
      expect((await closed).code).toBe(1001)
      expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(drainMs)
      await expect.poll(() => alive(old!), { timeout: 10_000 }).toBe(false)
      fresh.send('still')
      expect((await nextMessage(fresh)).data.toString()).toBe('still')
      fresh.close()
    } finally {
      await p.close()
      await up.close()
    }
  })
})

describe('one process without workers', () => {
  it('answers POST /v1/restart with 409: there is no primary to hand over to', async () => {
    const bg = await blueGreen()
    try {
      const r = await admin(bg.proxy, 'POST', '/v1/restart')
      expect(r.status).toBe(409)
      expect(r.body.error.code).toBe('SLUICE_NO_WORKERS')
      const s = (await admin(bg.proxy, 'GET', '/v1/state')).body
      expect(s.workers).toEqual([expect.objectContaining({ pid: process.pid, generation: 1 })])
    } finally {
      await bg.close()
    }
  })
})
