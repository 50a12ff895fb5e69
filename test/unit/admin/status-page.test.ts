import { createHash } from 'node:crypto'
import { expect, test } from 'vitest'
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from '../../../src/admin/status-page.js'

function inline(tag: 'script' | 'style'): string[] {
  return [...STATUS_PAGE_HTML.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => m[1]!)
}

test('the status page loads nothing from anywhere else', () => {
  expect(STATUS_PAGE_HTML).not.toMatch(/\s(src|href)=/i)
  expect(inline('style').join('')).not.toMatch(/@import|url\(/i)
  const origins = [...STATUS_PAGE_HTML.matchAll(/https?:\/\/[^\s'"]+/g)].map((m) => m[0])
  expect(origins).toEqual(['http://www.w3.org/2000/svg']) // a namespace name, never fetched
})

test('the page script is valid JavaScript', () => {
  const scripts = inline('script')
  expect(scripts).toHaveLength(1)
  expect(() => new Function(scripts[0]!)).not.toThrow()
})

test('the CSP allows exactly the inline script and style of the page', () => {
  const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`
  expect(STATUS_PAGE_CSP).toContain(`script-src ${hash(inline('script')[0]!)};`)
  expect(STATUS_PAGE_CSP).toContain(`style-src ${hash(inline('style')[0]!)};`)
  expect(STATUS_PAGE_CSP).toContain("default-src 'none'")
  expect(STATUS_PAGE_CSP).toContain("connect-src 'self'")
})
