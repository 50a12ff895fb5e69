import { type Browser, chromium } from 'playwright-core'

/** Debian's chromium by default (CI installs it in .ci/run); a missing browser fails loudly, never skips. */
export const CHROMIUM = process.env['SLUICE_CHROMIUM'] ?? '/usr/bin/chromium'

/** A headless Chromium with nothing running in the background; `args` adds switches. */
export function launchChromium(args: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...args,
    ],
  })
}
