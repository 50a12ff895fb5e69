import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { admin, type TestProxy } from '../helpers/proxy.js'
import { CHROMIUM, launchChromium } from '../helpers/chromium.js'

/**
 * A token-less loopback admin API in a real Chromium: a page on another
 * origin, and a page on a rebound name (evil.example resolving to 127.0.0.1),
 * can neither read nor change anything, while the status page itself keeps
 * working. README "Admin API".
 */


/** What a script on the page reports back: a status it could read, or the error that stopped it. */
type Outcome = { status: number; body: string } | { error: string }

/**
 * Runs one fetch in the page. A function, not a string, so that nothing is
 * evaluated from text; the page's globals are typed by hand (no DOM library).
 */
async function fetchIn(page: Page, url: string, init: Record<string, unknown>): Promise<Outcome> {
  return page.evaluate(
    async ([u, i]) => {
      const f = (globalThis as unknown as { fetch: (u: string, i: unknown) => Promise<{ status: number; text(): Promise<string> }> }).fetch
      try {
        const res = await f(u, i)
        return { status: res.status, body: await res.text() }
      } catch (err) {
        return { error: String(err) }
      }
    },
    [url, init] as const,
  )
}

describe('a token-less admin API against pages elsewhere, in Chromium', () => {
  test('has a Chromium to run in', () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (or set SLUICE_CHROMIUM)`).toBe(true)
  })

  let f: BlueGreen
  let p: TestProxy
  let evil: Server
  let evilOrigin: string
  let browser: Browser
  let page: Page
  /** Requests that reached the admin listener with a foreign Origin or Host, and what they got. */
  const seen: string[] = []

  beforeAll(async () => {
    f = await blueGreen({ admin: { host: '127.0.0.1', port: 0 }, weights: { blue: 90, green: 10 } })
    p = f.proxy
    p.admin.server.on('request', (req, res) => {
      if (req.url?.startsWith('/v1/') && (req.headers.origin ?? '').includes('127.0.0.2'))
        res.on('finish', () => seen.push(`${req.method} ${req.url} ${res.statusCode}`))
    })
    const started = await admin(
      p,
      'POST',
      '/v1/rollout',
      { canary: 'green', baseline: 'blue', steps: [{ weight: 20, holdMs: 600_000 }, { weight: 100 }] },
      null,
    )
    expect(started.status).toBe(201)
    // The attacker's page: another origin on loopback (127.0.0.2, another port).
    evil = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<!doctype html><title>elsewhere</title><p>elsewhere</p>')
    })
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.2', resolve))
    evilOrigin = `http://127.0.0.2:${(evil.address() as AddressInfo).port}`
    // DNS rebinding without a DNS server: the attacker's name resolves to loopback.
    browser = await launchChromium(['--host-resolver-rules=MAP evil.example 127.0.0.1'])
    page = await browser.newPage()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await new Promise((resolve) => evil?.close(resolve))
    await f?.close()
  })

  const state = async () => (await admin(p, 'GET', '/v1/state', undefined, null)).body

  test('a page on another origin cannot read the state', async () => {
    await page.goto(`${evilOrigin}/`)
    const read = await fetchIn(page, `${p.adminUrl}/v1/state`, {})
    expect(read).toMatchObject({ error: expect.stringContaining('TypeError') })
    // Chromium sent it (a simple GET needs no preflight); the admin refused it.
    await expect.poll(() => seen).toContain('GET /v1/state 403')
  }, 30_000)

  test('a page on another origin cannot promote, reload or set weights, with or without CORS', async () => {
    await page.goto(`${evilOrigin}/`)
    const before = await state()
    const simple = { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '' }
    expect(await fetchIn(page, `${p.adminUrl}/v1/rollout/promote`, simple)).toMatchObject({ error: expect.any(String) })
    // no-cors: the request is sent as it is, the page just cannot read the answer.
    expect(await fetchIn(page, `${p.adminUrl}/v1/rollout/promote`, { ...simple, mode: 'no-cors' })).toEqual({ status: 0, body: '' })
    expect(await fetchIn(page, `${p.adminUrl}/v1/reload`, { ...simple, mode: 'no-cors' })).toEqual({ status: 0, body: '' })
    // A JSON PUT needs a preflight, which the admin never grants: it never leaves the browser.
    const put = { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"blue":0,"green":100}' }
    expect(await fetchIn(page, `${p.adminUrl}/v1/weights`, put)).toMatchObject({ error: expect.stringContaining('TypeError') })
    await expect.poll(() => seen.filter((s) => s === 'POST /v1/rollout/promote 403').length).toBe(2)
    expect(seen).toContain('POST /v1/reload 403')
    expect(seen.some((s) => s.startsWith('PUT '))).toBe(false)
    const after = await state()
    expect(after.weights).toEqual(before.weights)
    expect(after.weights).toEqual({ blue: 80, green: 20 })
    expect(after.rollout.status).toBe('progressing')
  }, 30_000)

  test('a rebound name (same origin to the browser) gets 403 for reads and changes', async () => {
    const rebound = `http://evil.example:${p.adminPort}`
    await page.goto(`${rebound}/`)
    const read = await fetchIn(page, `${rebound}/v1/state`, {})
    expect(read).toMatchObject({ status: 403 })
    expect(JSON.parse((read as { body: string }).body).error.code).toBe('SLUICE_FORBIDDEN_HOST')
    const json = { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' }
    const promote = await fetchIn(page, `${rebound}/v1/rollout/promote`, json)
    expect(promote).toMatchObject({ status: 403 })
    // The status page served under that name shows the refusal, not the state.
    await expect.poll(() => page.getByTestId('conn-status').textContent()).toContain('HTTP 403')
    expect((await state()).rollout.status).toBe('progressing')
  }, 30_000)

  test('the status page on the admin itself works without a token', async () => {
    await page.goto(`${p.adminUrl}/`)
    await expect.poll(() => page.getByTestId('conn-status').textContent(), { timeout: 10_000 }).toBe('live')
    expect(await page.getByTestId('token-dialog').isHidden()).toBe(true)
    await expect.poll(() => page.getByTestId('weight-green').textContent()).toBe('20')
    await page.goto(`http://localhost:${p.adminPort}/`)
    await expect.poll(() => page.getByTestId('conn-status').textContent(), { timeout: 10_000 }).toBe('live')
  }, 30_000)
})
