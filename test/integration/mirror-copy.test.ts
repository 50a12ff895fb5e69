import type { IncomingMessage, ServerResponse } from 'node:http'
import { request } from 'undici'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { runCtl } from '../../src/cli/ctl.js'
import { steadyLoad } from '../helpers/load.js'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { admin, startProxy, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { startUpstream } from '../helpers/upstream.js'

interface Seen {
  method: string
  url: string
  body: string
  user: string | undefined
  /** Arrival order across every recording upstream of the file. */
  order: number
}

let arrivals = 0

/** An upstream that records what reached it and answers like the default test upstream (after `delayMs`). */
async function recording(name: string, opts: { delayMs?: number; hold?: boolean } = {}) {
  const seen: Seen[] = []
  const held: ServerResponse[] = []
  const u = await startUpstream(name, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const user = req.headers['x-user-id']
      seen.push({
        method: req.method!,
        url: req.url!,
        body,
        user: typeof user === 'string' ? user : undefined,
        order: arrivals++,
      })
      const answer = () => {
        if (res.destroyed) return
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
        res.end(JSON.stringify({ name, method: req.method, url: req.url, bytes: body.length }))
      }
      if (opts.hold) held.push(res)
      else if (opts.delayMs) setTimeout(answer, opts.delayMs)
      else answer()
    })
  })
  return { u, seen, held }
}

async function get(p: TestProxy, path: string, init: { method?: string; body?: string; user?: string } = {}) {
  const started = performance.now()
  const res = await request(p.url + path, {
    method: (init.method ?? 'GET') as 'GET',
    ...(init.body !== undefined ? { body: init.body } : {}),
    headers: init.user ? { 'x-user-id': init.user } : {},
  })
  const text = await res.body.text()
  return { status: res.statusCode, text, upstream: res.headers['x-upstream'], ms: performance.now() - started }
}

async function mirrorMetric(p: TestProxy, outcome: string): Promise<number> {
  const text = await (await fetch(`${p.adminUrl}/metrics`)).text()
  const line = text
    .split('\n')
    .find((l) => l.startsWith('sluice_mirror_requests_total{') && l.includes(`outcome="${outcome}"`))
  return line ? Number(line.split(' ').at(-1)) : 0
}

const state = async (p: TestProxy) => (await admin(p, 'GET', '/v1/state')).body
/** Copies compared so far (matched or not). */
const settled = async (p: TestProxy) => {
  const m = (await state(p)).mirror
  return m.matched + m.mismatches
}

describe('mirroring copies', () => {
  const closers: (() => Promise<unknown>)[] = []
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c()
  })

  async function setup(green: Awaited<ReturnType<typeof recording>>, mirror: Record<string, unknown> | null) {
    const blue = await recording('blue')
    closers.push(
      () => blue.u.close(),
      () => green.u.close(),
    )
    const p = await startProxy({
      versions: { blue: { instances: [{ url: blue.u.url }] }, green: { instances: [{ url: green.u.url }] } },
      weights: { blue: 100 },
      sticky: { keys: ['header:x-user-id'] },
      ...(mirror ? { mirror } : {}),
    })
    closers.push(() => p.stop())
    return { p, blue }
  }

  it('copies reach the mirror version and never the user', async () => {
    const green = await recording('green')
    const { p, blue } = await setup(green, { version: 'green', percent: 100 })
    for (let i = 0; i < 20; i++) {
      const r = await get(p, `/items/${i}?q=${i}`)
      expect(r.status).toBe(200)
      expect(JSON.parse(r.text)).toEqual({ name: 'blue', method: 'GET', url: `/items/${i}?q=${i}`, bytes: 0 })
      expect(r.upstream).toBe('blue')
    }
    await expect.poll(() => green.seen.length, { message: 'twenty copies at green' }).toBe(20)
    expect(green.seen.map((s) => s.url).sort()).toEqual(blue.seen.map((s) => s.url).sort())
    // Each copy leaves only after the user's request was sent: blue always has it first.
    for (const copy of green.seen) {
      expect(copy.order).toBeGreaterThan(blue.seen.find((s) => s.url === copy.url)!.order)
    }
    await expect.poll(() => settled(p), { message: 'twenty settled copies' }).toBe(20)
    const m = (await state(p)).mirror
    expect(m).toMatchObject({ version: 'green', percent: 100, copied: 20, errors: 0, dropped: 0 })
    expect(m.shadowP95Ms).toBeGreaterThan(0)
    expect(m.primaryP95Ms).toBeGreaterThan(0)
    // Copies are not user traffic: green's user-facing figures stay empty.
    const s = await state(p)
    expect(s.analysis.green.requests).toBe(0)
    expect(s.versions.green.inflight).toBe(0)
  })

  it("a mirror that takes 2 s does not delay the user's response", async () => {
    const green = await recording('green', { delayMs: 2000 })
    const { p } = await setup(green, { version: 'green', percent: 100, timeoutMs: 5000 })
    const r = await get(p, '/slow-shadow')
    expect(r.status).toBe(200)
    expect(r.upstream).toBe('blue')
    // Generous: the user's answer comes from blue at once; the shadow answers after 2 s.
    expect(r.ms).toBeLessThan(1000)
    await expect.poll(() => green.seen.length, { message: 'the copy at green' }).toBe(1)
    await expect.poll(() => settled(p), { message: 'the copy settled' }).toBe(1)
    const m = (await state(p)).mirror
    expect(m.shadowP95Ms).toBeGreaterThanOrEqual(1900)
  })

  it('a shadow that never answers is cut at timeoutMs and counted as an error; users are not', async () => {
    const green = await recording('green', { hold: true })
    const { p } = await setup(green, { version: 'green', percent: 100, timeoutMs: 300 })
    for (let i = 0; i < 3; i++) {
      const r = await get(p, `/held/${i}`)
      expect(r.status).toBe(200)
      expect(r.upstream).toBe('blue')
    }
    const m = await vi.waitFor(
      async () => {
        const s = await state(p)
        expect({ errors: s.mirror.errors, inflight: s.mirror.inflight }, 'three copies timed out').toEqual({
          errors: 3,
          inflight: 0,
        })
        return s.mirror
      },
      { timeout: 10_000, interval: 20 },
    )
    expect(m).toMatchObject({ copied: 3, matched: 0, mismatches: 0 })
    const mm = (await admin(p, 'GET', '/v1/mirror/mismatches')).body.mismatches
    expect(mm).toHaveLength(3)
    for (const e of mm) {
      expect(e).toMatchObject({ primaryStatus: 200, shadowStatus: 0, differs: ['error'] })
      expect(e.error).toBe('timeout: no complete answer within 300 ms')
      expect(e.shadowMs).toBeGreaterThanOrEqual(300)
    }
    for (const res of green.held) res.destroy()
  })

  it('only eligible methods are copied, and bodies only when small', async () => {
    const green = await recording('green')
    const { p } = await setup(green, null)
    // The default methods: GET and HEAD.
    expect((await admin(p, 'PUT', '/v1/mirror', { version: 'green', percent: 100 })).status).toBe(200)
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const r = await get(p, `/m/${method}`, {
        method,
        ...(method === 'POST' || method === 'PUT' ? { body: 'x' } : {}),
      })
      expect(r.status).toBe(200)
    }
    await expect.poll(async () => (await state(p)).mirror.copied, { message: 'two copies' }).toBe(2)
    await expect.poll(() => green.seen.length, { message: 'two copies at green' }).toBe(2)
    expect(green.seen.map((s) => s.method).sort()).toEqual(['GET', 'HEAD'])

    // POST copied with its body when small; a body over maxBodyBytes is not copied (and is counted dropped).
    const put = await admin(p, 'PUT', '/v1/mirror', {
      version: 'green',
      percent: 100,
      methods: ['POST'],
      maxBodyBytes: 1000,
    })
    expect(put.status).toBe(200)
    const small = JSON.stringify({ order: 42, items: ['a', 'b'] })
    const r1 = await get(p, '/orders', { method: 'POST', body: small })
    expect(JSON.parse(r1.text)).toMatchObject({ name: 'blue', bytes: small.length })
    const big = 'y'.repeat(5000)
    const r2 = await get(p, '/orders/big', { method: 'POST', body: big })
    expect(JSON.parse(r2.text)).toMatchObject({ name: 'blue', bytes: 5000 })
    await expect.poll(() => green.seen.length, { message: 'the small POST at green' }).toBe(3)
    expect(green.seen[2]).toMatchObject({ method: 'POST', url: '/orders', body: small })
    const m = (await state(p)).mirror
    expect(m).toMatchObject({ copied: 1, dropped: 1 })
    expect(await mirrorMetric(p, 'dropped')).toBe(1)
  })

  it('beyond maxInflight copies are dropped and counted, and users are still served', async () => {
    const green = await recording('green', { hold: true })
    const { p } = await setup(green, { version: 'green', percent: 100, maxInflight: 2, timeoutMs: 20_000 })
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => get(p, `/cap/${i}`)))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200])
    await expect.poll(() => green.held.length, { message: 'two copies held at green' }).toBe(2)
    let s = await state(p)
    expect(s.mirror).toMatchObject({ copied: 2, dropped: 4, inflight: 2 })
    expect(await mirrorMetric(p, 'dropped')).toBe(4)
    // Once the shadow answers, copies flow again.
    for (const res of green.held.splice(0)) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    }
    await expect.poll(async () => (await state(p)).mirror.inflight, { message: 'no copy in flight' }).toBe(0)
    await get(p, '/cap/after')
    await expect.poll(() => green.held.length, { message: 'the next copy at green' }).toBe(1)
    s = await state(p)
    expect(s.mirror).toMatchObject({ copied: 3, dropped: 4 })
    green.held.splice(0).forEach((res) => res.destroy())
  })

  it('a mirror version that refuses connections does not produce a single user error', async () => {
    const green = await recording('green')
    await green.u.kill()
    const { p } = await setup(green, { version: 'green', percent: 100 })
    const load = steadyLoad({ url: p.url, concurrency: 4, maxPerLoop: 50 })
    await expect.poll(() => load.result.ok + load.result.failed, { message: 'two hundred answers' }).toBe(200)
    const result = await load.stop()
    expect(result.sent).toBe(200)
    expect(result.failed).toBe(0)
    expect(result.failures).toEqual([])
    const m = await vi.waitFor(
      async () => {
        const s = await state(p)
        expect(s.mirror.errors, 'every copy counted as an error').toBe(200)
        return s.mirror
      },
      { timeout: 10_000, interval: 20 },
    )
    expect(m).toMatchObject({ copied: 200, matched: 0 })
    expect(await mirrorMetric(p, 'error')).toBe(200)
    const mm = (await admin(p, 'GET', '/v1/mirror/mismatches')).body.mismatches
    expect(mm.at(-1)).toMatchObject({
      version: 'green',
      method: 'GET',
      primaryStatus: 200,
      shadowStatus: 0,
      differs: ['error'],
    })
    expect(mm.at(-1).error).toMatch(/ECONNREFUSED/)
  })

  it("a user's requests are mirrored together (by sticky key)", async () => {
    const green = await recording('green')
    const { p } = await setup(green, { version: 'green', percent: 50 })
    const users = Array.from({ length: 40 }, (_, i) => `user-${i}`)
    for (const user of users) for (let n = 0; n < 4; n++) await get(p, `/u/${user}/${n}`, { user })
    await expect.poll(async () => (await state(p)).mirror.inflight, { message: 'copies done' }).toBe(0)
    const perUser = new Map<string, number>()
    for (const s of green.seen) perUser.set(s.user!, (perUser.get(s.user!) ?? 0) + 1)
    for (const count of perUser.values()) expect(count).toBe(4)
    // Half the users, within a wide statistical margin.
    expect(perUser.size).toBeGreaterThan(8)
    expect(perUser.size).toBeLessThan(32)
  })
})

describe('PUT /v1/mirror', () => {
  let f: BlueGreen | undefined
  afterEach(() => f?.close())

  it('starts and stops mirroring through the change path, and refuses invalid settings', async () => {
    f = await blueGreen({ weights: { blue: 100 } })
    const { blue, green, proxy: p } = f
    expect((await admin(p, 'GET', '/v1/state')).body.mirror).toBeNull()
    expect((await admin(p, 'GET', '/v1/mirror')).body).toBeNull()

    const bad = await admin(p, 'PUT', '/v1/mirror', { version: 'green', percent: 200 })
    expect(bad.status).toBe(400)
    expect(bad.body.error.path).toBe('percent')
    const unknown = await admin(p, 'PUT', '/v1/mirror', { version: 'purple', percent: 10 })
    expect(unknown.status).toBe(400)
    expect(unknown.body.error).toMatchObject({ path: 'version', message: 'unknown version "purple"' })
    const typo = await admin(p, 'PUT', '/v1/mirror', { version: 'green', precent: 10 })
    expect(typo.status).toBe(400)
    expect(typo.body.error.path).toBe('precent')
    const badPointer = await admin(p, 'PUT', '/v1/mirror', { version: 'green', ignore: ['/a/~2'] })
    expect(badPointer.status).toBe(400)
    expect(badPointer.body.error.path).toBe('ignore.0')
    expect((await admin(p, 'PUT', '/v1/mirror')).status).toBe(400)
    expect((await admin(p, 'GET', '/v1/state')).body.mirror).toBeNull()

    const on = await admin(p, 'PUT', '/v1/mirror', { version: 'green', percent: 100 })
    expect(on.status).toBe(200)
    expect(on.body.mirror).toMatchObject({ version: 'green', percent: 100, methods: ['GET', 'HEAD'], copied: 0 })
    await (await request(p.url + '/x')).body.text()
    await expect.poll(() => green.hits, { message: 'a copy at green' }).toBe(1)

    const off = await admin(p, 'PUT', '/v1/mirror', null)
    expect(off.status).toBe(200)
    expect(off.body.mirror).toBeNull()
    await (await request(p.url + '/y')).body.text()
    expect(blue.hits).toBe(2)
    expect(green.hits).toBe(1)

    const audit = (await admin(p, 'GET', '/v1/audit')).body as any[]
    expect(audit.filter((e) => e.action.startsWith('mirror.')).map((e) => [e.action, e.actor])).toEqual([
      ['mirror.start', 'admin'],
      ['mirror.stop', 'admin'],
    ])
  })
})

describe('sluice ctl mirror', () => {
  it('start, mismatches and stop work against the real admin API', async () => {
    const f = await blueGreen({ weights: { blue: 100 } })
    const p = f.proxy
    try {
      const ctl = async (...argv: string[]) => {
        let out = ''
        let err = ''
        const env = { SLUICE_ADMIN_URL: p.adminUrl, SLUICE_ADMIN_TOKEN: TEST_TOKEN }
        const code = await runCtl(argv, { env, stdout: (t) => (out += t), stderr: (t) => (err += t) })
        return { code, out, err }
      }
      expect(await ctl('mirror', 'start', 'green', '100')).toEqual({
        code: 0,
        out: 'mirroring 100% of eligible requests to green\n',
        err: '',
      })
      await (await request(`${p.url}/differs`)).body.text()
      await expect
        .poll(async () => (await admin(p, 'GET', '/v1/state')).body.mirror.mismatches, { message: 'a mismatch' })
        .toBe(1)
      const listed = await ctl('mirror', 'mismatches')
      expect(listed.code).toBe(0)
      expect(listed.out).toContain('/differs')
      expect(listed.out).toContain('header:x-upstream')
      const state = await ctl('state')
      expect(state.out).toMatch(/mirror[\s\S]*green/)
      expect(await ctl('mirror', 'start', 'purple', '5')).toMatchObject({ code: 1 })
      expect(await ctl('mirror', 'stop')).toEqual({ code: 0, out: 'mirroring stopped\n', err: '' })
      expect((await admin(p, 'GET', '/v1/state')).body.mirror).toBeNull()
    } finally {
      await f.close()
    }
  })
})
