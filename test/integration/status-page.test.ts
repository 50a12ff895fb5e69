import { existsSync, mkdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { STATUS_PAGE_CSP } from '../../src/admin/status-page.js'
import { buildConfig } from '../../src/config/load.js'
import { type Running, runSluice } from '../../src/lifecycle/run.js'
import { steadyLoad } from '../helpers/load.js'
import { CHROMIUM, launchChromium } from '../helpers/chromium.js'

/**
 * The status page in a real Chromium against the real proxy: token prompt,
 * live weights, instances, rollout and the traffic charts. The page is served
 * here under its own Content-Security-Policy, so this also proves it needs
 * nothing from elsewhere and no inline code beyond its own hashed script.
 */

const TOKEN = 'status-page-token'
const ARTIFACTS = 'test-artifacts'

let upstreams: Server[] = []
let running: Running
let browser: Browser
let page: Page
let adminUrl: string
let proxyUrl: string
const pageErrors: string[] = []

async function upstream(name: string): Promise<string> {
  const s = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(name)
  })
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  upstreams.push(s)
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`
}

async function admin(method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  expect(res.status).toBe(200)
  return res.json()
}

/** The page's DOM as far as these tests read it (this file is compiled without the DOM library). */
type PageGlobal = { document: { querySelector(s: string): { textContent: string | null } | null } }

/**
 * Waits until the first element matching the selector has exactly this text.
 * A function, not a string: the page's CSP forbids eval.
 */
async function waitForSelectorText(selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([sel, want]) => (globalThis as unknown as PageGlobal).document.querySelector(sel)?.textContent === want,
    [selector, text] as const,
    { timeout: 10_000 },
  )
}

async function waitForText(testid: string, text: string): Promise<void> {
  await waitForSelectorText(`[data-testid="${testid}"]`, text)
}

async function textOf(selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent()) ?? ''
}

// A missing browser fails loudly (CI installs Debian's chromium in .ci/run); it never skips.
describe('status page', () => {
  test('has a Chromium to run in', () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (or set SLUICE_CHROMIUM)`).toBe(true)
  })

  let blue: string
  let green: string

  beforeAll(async () => {
    blue = await upstream('blue')
    green = await upstream('green')
    const config = buildConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, token: TOKEN },
        versions: { blue: { instances: [{ url: blue }] }, green: { instances: [{ url: green }] } },
        weights: { blue: 90, green: 10 },
        analysis: { intervalMs: 250 },
      },
      undefined,
    )
    running = await runSluice(config, { log: pino({ level: 'silent' }) })
    adminUrl = `http://127.0.0.1:${running.adminPort}`
    proxyUrl = `http://127.0.0.1:${running.port}`
    browser = await launchChromium()
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    page.on('pageerror', (e) => pageErrors.push(e.message))
    page.on('console', (m) => {
      // A 401 on /v1/state is part of the flow; Chromium logs it as a failed resource.
      if (m.type() === 'error' && !m.text().includes('401')) pageErrors.push(m.text())
    })
    await page.route(`${adminUrl}/`, async (route) => {
      const res = await route.fetch()
      await route.fulfill({ response: res, headers: { ...res.headers(), 'content-security-policy': STATUS_PAGE_CSP } })
    })
    mkdirSync(ARTIFACTS, { recursive: true })
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await running?.stop()
    await Promise.all(upstreams.map((s) => new Promise((resolve) => s.close(resolve))))
    upstreams = []
  })

  test('asks for the token, and again when the token is wrong', async () => {
    await page.goto(`${adminUrl}/`)
    await page.getByTestId('token-dialog').waitFor({ state: 'visible' })
    expect(await textOf('[data-testid="token-message"]')).toBe('This admin API needs a token.')
    await page.getByTestId('token-input').fill('wrong')
    await page.getByTestId('token-submit').click()
    await waitForText('token-message', 'The token was rejected. Enter the admin token again.')
    await page.getByTestId('token-input').fill(TOKEN)
    await page.getByTestId('token-submit').click()
    await page.getByTestId('token-dialog').waitFor({ state: 'hidden' })
    await waitForText('conn-status', 'live')
  }, 30_000)

  test('shows the weights, the instances and an idle rollout', async () => {
    await waitForText('weight-blue', '90')
    await waitForText('weight-green', '10')
    const barWidth = await page
      .getByTestId('weight-bar-blue')
      .evaluate((e) => (e as unknown as { style: { width: string } }).style.width)
    expect(barWidth).toBe('90%')
    expect(await page.locator('[data-testid="instance"]').count()).toBe(2)
    const blueRow = `[data-testid="instance"][data-url="${blue}"]`
    expect(await textOf(`${blueRow} [data-field="healthy"]`)).toBe('healthy')
    expect(await textOf(`${blueRow} [data-field="source"]`)).toBe('config')
    expect(await textOf(`${blueRow} [data-field="draining"]`)).toBe('no')
    expect(await textOf(`${blueRow} [data-field="inflight"]`)).toBe('0')
    expect(await textOf('[data-testid="rollout-status"]')).toBe('idle')
    expect(await page.getByTestId('mirror-panel').isHidden()).toBe(true)
    expect(await textOf('[data-testid="store"]')).toBe('store: memory')
  }, 30_000)

  test('follows weight changes and drains made through the admin API', async () => {
    await admin('PUT', '/v1/weights', { blue: 40, green: 60 })
    await waitForText('weight-blue', '40')
    await waitForText('weight-green', '60')
    await admin('POST', '/v1/drain', { url: green })
    await waitForSelectorText(`[data-testid="instance"][data-url="${green}"] [data-field="draining"]`, 'draining')
    await waitForText('usable-green', '0/1 usable')
    await admin('POST', '/v1/undrain', { url: green })
    await waitForText('usable-green', '1/1 usable')
  }, 30_000)

  test('charts the request rate, error rate and p95 of live traffic', async () => {
    // Traffic until the page has seen two polls with requests in between.
    const deadline = Date.now() + 20_000
    let rate = '-'
    while (Date.now() < deadline) {
      await Promise.all(Array.from({ length: 20 }, () => fetch(proxyUrl).then((r) => r.text())))
      rate = await textOf('[data-testid="rate-green"]')
      if (rate !== '-' && Number(rate) > 0) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(Number(rate)).toBeGreaterThan(0)
    expect(await textOf('[data-testid="error-rate-green"]')).toBe('0.00%')
    expect(await textOf('[data-testid="p95-green"]')).toMatch(/^\d+\.\d ms$/)
    expect(await page.locator('[data-testid="line-rate-green"]').count()).toBe(1)
    expect(await page.locator('[data-testid="line-p95-blue"]').count()).toBe(1)
    await page.screenshot({ path: `${ARTIFACTS}/status-page.png`, fullPage: true })
  }, 40_000)

  test('shows a rollout as it progresses and rolls back, and the mirror panel while mirroring', async () => {
    const post = async (path: string, body: unknown) => {
      const res = await fetch(adminUrl + path, {
        method: path === '/v1/mirror' ? 'PUT' : 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      expect(res.status).toBeLessThan(300)
      await res.text()
    }
    await post('/v1/rollout', {
      baseline: 'blue',
      canary: 'green',
      steps: [
        { weight: 20, holdMs: 600_000 },
        { weight: 100, holdMs: 0 },
      ],
    })
    await waitForText('rollout-status', 'progressing')
    await waitForText('weight-green', '20')
    expect(await textOf('[data-testid="rollout-versions"]')).toBe('green (baseline blue)')
    expect(await textOf('[data-testid="rollout-step"]')).toContain('20')
    await page.getByTestId('rollout-hold').waitFor({ state: 'visible' })
    expect(await textOf('[data-testid="rollout-hold"]')).toMatch(/^\d+ s$/)

    await post('/v1/rollout/abort', {})
    await waitForText('rollout-status', 'rolled_back')
    await waitForText('weight-green', '0')
    expect(await textOf('[data-testid="rollout-reason"]')).not.toBe('-')

    await post('/v1/mirror', { version: 'green', percent: 50 })
    await page.getByTestId('mirror-panel').waitFor({ state: 'visible' })
    await post('/v1/mirror', null)
    await page.getByTestId('mirror-panel').waitFor({ state: 'hidden' })
  }, 40_000)

  test('shows a step that awaits an approval, with an approve button that approves it', async () => {
    // Enough traffic for a passing verdict, which the step needs before it awaits.
    const load = steadyLoad({ url: proxyUrl, concurrency: 4 })
    try {
      const res = await fetch(adminUrl + '/v1/rollout', {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          baseline: 'blue',
          canary: 'green',
          steps: [{ weight: 20, holdMs: 200, approval: true }, { weight: 100 }],
        }),
      })
      expect(res.status).toBe(201)
      await res.text()
      await page.getByTestId('rollout-approve').waitFor({ state: 'visible', timeout: 20_000 })
      expect(await textOf('[data-testid="rollout-awaiting"]')).toBe('step 1 awaits an approval')
      expect(await textOf('[data-testid="rollout-reason"]')).toContain('awaits an approval')
      await page.getByTestId('rollout-approve').click()
      await waitForText('rollout-approve-msg', 'approved')
      await waitForText('rollout-status', 'promoted')
      expect(await page.getByTestId('rollout-approve').isHidden()).toBe(true)
      const audit = (await admin('GET', '/v1/audit')) as { action: string; actor: string | null }[]
      expect(audit.findLast((e) => e.action === 'rollout.approve')?.actor).toBe('admin')
    } finally {
      await load.stop()
    }
  }, 40_000)

  test('keeps the token for the tab: a reload needs no new prompt', async () => {
    await page.reload()
    await waitForText('conn-status', 'live')
    expect(await page.getByTestId('token-dialog').isHidden()).toBe(true)
    expect(pageErrors).toEqual([])
  }, 30_000)
})
