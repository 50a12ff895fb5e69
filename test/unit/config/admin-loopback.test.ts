import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { buildConfig } from '../../../src/config/load.js'
import { isLoopback } from '../../../src/config/schema.js'
import { ConfigError, formatProblem } from '../../../src/errors.js'

const BLUE = { instances: [{ url: 'http://127.0.0.1:3001' }] }

/** The problem lines of a config with this admin host and no token, or [] when it is valid. */
function tokenlessProblems(host: string): string[] {
  try {
    buildConfig({ versions: { blue: BLUE }, admin: { host } }, 'test.yaml', {})
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map(formatProblem)
  }
}

describe('a token-less admin must be on loopback (README "Admin API")', () => {
  it.each(['127.0.0.1', '127.0.0.2', '127.255.255.254', '::1', '0:0:0:0:0:0:0:1', 'localhost', 'LocalHost'])(
    '%s is loopback: no token needed',
    (host) => {
      expect(tokenlessProblems(host)).toEqual([])
    },
  )

  it.each([
    '127.evil.example',
    '127.0.0.1.evil.example',
    '127.0.0.1.nip.io',
    'localhost.evil.example',
    '0.0.0.0',
    '::',
    '128.0.0.1',
    '10.0.0.1',
    'admin.internal',
  ])('%s needs a token', (host) => {
    expect(tokenlessProblems(host)).toEqual([`admin.token: required when admin.host "${host}" is not loopback`])
  })

  it('an IPv4 address is loopback exactly when its first octet is 127; a name built on one never is', () => {
    const octet = fc.integer({ min: 0, max: 255 })
    fc.assert(
      fc.property(fc.tuple(octet, octet, octet, octet), fc.domain(), ([a, b, c, d], domain) => {
        const ip = `${a}.${b}.${c}.${d}`
        expect(isLoopback(ip)).toBe(a === 127)
        expect(isLoopback(`${ip}.${domain}`)).toBe(false)
      }),
      { numRuns: 300 },
    )
  })
})
