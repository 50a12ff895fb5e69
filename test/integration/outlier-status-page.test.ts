import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'
import { request } from 'undici'
import { afterAll, describe, expect, it } from 'vitest'
import { type DeployFixture, startDeployFixture } from '../helpers/deploy-fixture.js'
import { TEST_TOKEN } from '../helpers/proxy.js'
import { faulty } from './outlier-fixture.js'

const CHROMIUM = process.env['SLUICE_CHROMIUM'] ?? '/usr/bin/chromium'

/** The page's DOM as far as this test reads it (compiled without the DOM library). */
type PageGlobal = { document: { querySelector(s: string): { textContent: string | null } | null } }

let f: DeployFixture | undefined
let browser: Browser | undefined
afterAll(async () => {
  await browser?.close()
  await f?.close()
})

describe('an ejection on the status page', () => {
  it('shows "ejected until" and the time, then "no" when probes leave its version nothing else', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (or set SLUICE_CHROMIUM)`).toBe(true)
    f = await startDeployFixture(
      { blue: [{ name: 'b1', handler: faulty('b1', { kind: '500', rate: 1 }) }, { name: 'b2' }] },
      { outlier: { consecutiveFailures: 2, ejectionMs: 60_000 } },
    )
    const b1 = f.proxy.sluice.versions[0]!.instances[0]!
    for (let n = 0; !b1.ejected && n < 50; n++) await (await request(f.proxy.url + '/')).body.dump()
    expect(b1.ejected).toBe(true)
    const iso = new Date(b1.ejectedUntil).toISOString()

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] })
    const page = await browser.newPage()
    await page.goto(`${f.proxy.adminUrl}/`)
    await page.getByTestId('token-input').fill(TEST_TOKEN)
    await page.getByTestId('token-submit').click()
    const cell = `[data-testid="instance"][data-url="${b1.url}"] [data-field="ejected"]`
    const shows = (want: string) =>
      page.waitForFunction(
        ([sel, text]) => (globalThis as unknown as PageGlobal).document.querySelector(sel)?.textContent === text,
        [cell, want] as const,
        { timeout: 10_000 },
      )
    // The time as the browser formats it.
    const until = await page.evaluate((t) => new Date(t).toLocaleTimeString(), iso)
    await shows(`ejected until ${until}`)
    // b2 fails its probes: blue would have nothing usable, so b1 is readmitted at once (it only fails requests).
    f.ups.blue![1]!.healthy = false
    await shows('no')
    expect(b1.usable).toBe(true)
  }, 30_000)
})
