import type { IncomingMessage, ServerResponse } from 'node:http'
import { request } from 'undici'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { admin, type TestProxy } from '../helpers/proxy.js'

let counter = 0

/** An answer per request: status, headers and a JSON body; `volatile` adds a request id and timestamps. */
function answering(opts: { status?: number; extra?: Record<string, unknown>; volatile?: boolean }) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    const n = ++counter
    const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' }
    const body: Record<string, unknown> = { path: req.url, ...opts.extra }
    if (opts.volatile) {
      headers['x-request-id'] = `req-${n}-${Math.random()}`
      body.generatedAt = new Date(Date.now() + n).toISOString()
      body.items = [
        { id: 1, updatedAt: n },
        { id: 2, updatedAt: n + 1 },
      ]
    }
    res.writeHead(opts.status ?? 200, headers)
    res.end(JSON.stringify(body))
  }
}

describe('mirror comparison', () => {
  let p: TestProxy
  let f: BlueGreen | undefined
  afterEach(() => f?.close())

  async function setup(
    blueOpts: Parameters<typeof answering>[0],
    greenOpts: Parameters<typeof answering>[0],
    mirror: Record<string, unknown>,
  ) {
    f = await blueGreen(
      { weights: { blue: 100 }, mirror: { version: 'green', percent: 100, ...mirror } },
      { blue: answering(blueOpts), green: answering(greenOpts) },
    )
    p = f.proxy
  }

  /** Sends `n` GETs and waits until all their copies have settled; returns the mirror figures. */
  async function send(n: number, path = '/things'): Promise<any> {
    for (let i = 0; i < n; i++) {
      const res = await request(`${p.url}${path}/${i}`)
      await res.body.text()
      expect(res.statusCode).toBeLessThan(500)
    }
    return vi.waitFor(
      async () => {
        const m = (await admin(p, 'GET', '/v1/state')).body.mirror
        expect(m.matched + m.mismatches + m.errors + m.uncompared, `${n} settled copies`).toBe(n)
        return m
      },
      { timeout: 10_000, interval: 20 },
    )
  }

  async function metric(outcome: string): Promise<number> {
    const text = await (await fetch(`${p.adminUrl}/metrics`)).text()
    const re = new RegExp(`^sluice_mirror_requests_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\d+)`, 'm')
    return Number(text.match(re)?.[1] ?? 0)
  }

  const mismatches = async () => (await admin(p, 'GET', '/v1/mirror/mismatches')).body.mismatches as any[]

  it('identical answers are counted as matches', async () => {
    await setup({}, {}, {})
    const m = await send(10)
    expect(m).toMatchObject({ copied: 10, matched: 10, mismatches: 0, errors: 0 })
    expect(await metric('match')).toBe(10)
    expect(await metric('mismatch')).toBe(0)
    expect(await mismatches()).toEqual([])
  })

  it('a different body, or status, is a mismatch and is listed for operators', async () => {
    await setup({}, { extra: { price: 2 } }, {})
    let m = await send(3, '/body')
    expect(m).toMatchObject({ matched: 0, mismatches: 3 })
    expect(await metric('mismatch')).toBe(3)
    const list = await mismatches()
    expect(list).toHaveLength(3)
    expect(list.at(-1)).toMatchObject({
      version: 'green',
      method: 'GET',
      path: '/body/2',
      primaryStatus: 200,
      shadowStatus: 200,
      differs: ['body'],
    })
    expect(list.at(-1).error).toBeUndefined()

    await f!.close()
    await setup({}, { status: 500 }, {})
    m = await send(2, '/status')
    expect(m).toMatchObject({ mismatches: 2 })
    expect((await mismatches()).at(-1)).toMatchObject({ primaryStatus: 200, shadowStatus: 500, differs: ['status'] })
  })

  it('ignored headers and JSON pointers are left out of the comparison', async () => {
    // Without ignore rules, the request id header and the timestamps differ every time.
    await setup({ volatile: true }, { volatile: true }, {})
    let m = await send(3, '/volatile')
    expect(m).toMatchObject({ matched: 0, mismatches: 3 })
    expect((await mismatches()).at(-1).differs).toEqual(['header:x-request-id', 'body'])

    // Header ignored, JSON fields ignored (one by name, one in every element of a list): all match.
    const put = await admin(p, 'PUT', '/v1/mirror', {
      version: 'green',
      percent: 100,
      ignore: ['X-Request-Id', '/generatedAt', '/items/*/updatedAt'],
    })
    expect(put.status).toBe(200)
    m = await send(5, '/volatile')
    expect(m).toMatchObject({ copied: 5, matched: 5, mismatches: 0 })

    // Only the header ignored: the body still differs.
    await admin(p, 'PUT', '/v1/mirror', { version: 'green', percent: 100, ignore: ['x-request-id', '/generatedAt'] })
    m = await send(2, '/volatile')
    expect(m).toMatchObject({ matched: 0, mismatches: 2 })
    expect((await mismatches()).at(-1).differs).toEqual(['body'])
  })

  it('a JSON body over maxBodyBytes is compared whole (never buffered past the bound)', async () => {
    await setup(
      { volatile: true, extra: { pad: 'p'.repeat(2000) } },
      { volatile: true, extra: { pad: 'p'.repeat(2000) } },
      { ignore: ['x-request-id', '/generatedAt', '/items/*/updatedAt'], maxBodyBytes: 1024 },
    )
    const m = await send(2, '/big')
    expect(m).toMatchObject({ matched: 0, mismatches: 2 })
    expect((await mismatches()).at(-1).differs).toEqual(['body'])
  })

  it('with compare off, answers are counted but not compared', async () => {
    await setup({}, { extra: { other: true } }, { compare: false })
    const m = await send(4)
    expect(m).toMatchObject({ copied: 4, matched: 0, mismatches: 0, uncompared: 4 })
    expect(m.shadowP95Ms).toBeGreaterThan(0)
    expect(await metric('uncompared')).toBe(4)
  })
})
