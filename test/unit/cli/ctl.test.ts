import { describe, expect, test } from 'vitest'
import { formatApiError, requestFor, runCtl } from '../../../src/cli/ctl.js'

function capture(env: NodeJS.ProcessEnv = {}) {
  const out = { stdout: '', stderr: '' }
  const io = { env, stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s) }
  return { out, io }
}

describe('sluice ctl requests', () => {
  test('each command is one admin API call with the contract body', () => {
    expect(requestFor({ verb: 'state' })).toEqual({ method: 'GET', path: '/v1/state' })
    expect(requestFor({ verb: 'weights', weights: { blue: 90, green: 10 } })).toEqual({
      method: 'PUT',
      path: '/v1/weights',
      body: { blue: 90, green: 10 },
    })
    expect(requestFor({ verb: 'drain', target: { url: 'http://a:1' } })).toEqual({
      method: 'POST',
      path: '/v1/drain',
      body: { url: 'http://a:1' },
    })
    expect(requestFor({ verb: 'instances-add', version: 'green', url: 'http://a:1' })).toEqual({
      method: 'POST',
      path: '/v1/instances',
      body: { version: 'green', url: 'http://a:1' },
    })
    expect(requestFor({ verb: 'instances-remove', url: 'http://a:1' })).toEqual({
      method: 'DELETE',
      path: '/v1/instances',
      body: { url: 'http://a:1' },
    })
    expect(requestFor({ verb: 'undrain', target: { version: 'blue' } })).toEqual({
      method: 'POST',
      path: '/v1/undrain',
      body: { version: 'blue' },
    })
    expect(requestFor({ verb: 'rollout-start', canary: 'green', onBreach: 'pause' })).toEqual({
      method: 'POST',
      path: '/v1/rollout',
      body: { canary: 'green', onBreach: 'pause' },
    })
    expect(requestFor({ verb: 'rollout', action: 'abort' })).toEqual({ method: 'POST', path: '/v1/rollout/abort' })
    expect(requestFor({ verb: 'rollout-status' })).toEqual({ method: 'GET', path: '/v1/state' })
    expect(requestFor({ verb: 'rollout-history' })).toEqual({ method: 'GET', path: '/v1/rollouts' })
    expect(requestFor({ verb: 'mirror-stop' })).toEqual({ method: 'PUT', path: '/v1/mirror', body: null })
    expect(requestFor({ verb: 'mirror-mismatches' })).toEqual({ method: 'GET', path: '/v1/mirror/mismatches' })
  })
})

describe('sluice ctl errors', () => {
  test('an error body prints as error: CODE: message (path)', () => {
    const body = { error: { code: 'SLUICE_INVALID_WEIGHTS', message: 'must sum to 100', path: 'weights' } }
    expect(formatApiError(400, body, '', true)).toBe('error: SLUICE_INVALID_WEIGHTS: must sum to 100 (weights)\n')
    expect(
      formatApiError(409, { error: { code: 'SLUICE_ROLLOUT_ACTIVE', message: 'a rollout is active' } }, '', true),
    ).toBe('error: SLUICE_ROLLOUT_ACTIVE: a rollout is active\n')
  })

  test('the problems of a rejected reload follow, one per line', () => {
    const body = {
      error: {
        code: 'SLUICE_CONFIG_INVALID',
        message: 'invalid config',
        problems: [{ path: 'weights.green', message: 'unknown version "green"' }, { message: 'no versions' }],
      },
    }
    expect(formatApiError(400, body, '', true)).toBe(
      'error: SLUICE_CONFIG_INVALID: invalid config\n  weights.green: unknown version "green"\n  no versions\n',
    )
  })

  test('an answer that is not an error body prints its status and first line; a 401 without a token hints at it', () => {
    expect(formatApiError(502, undefined, 'Bad Gateway\nmore', true)).toBe('error: HTTP 502: Bad Gateway\n')
    expect(formatApiError(401, { error: { code: 'SLUICE_UNAUTHORIZED', message: 'bad token' } }, '', false)).toBe(
      'error: SLUICE_UNAUTHORIZED: bad token\nhint: SLUICE_ADMIN_TOKEN is not set\n',
    )
  })

  test('a usage error exits 2 with the usage on stderr and sends nothing', async () => {
    const { out, io } = capture({ SLUICE_ADMIN_URL: 'http://127.0.0.1:1' })
    expect(await runCtl(['weights', 'blue=abc'], io)).toBe(2)
    expect(out.stdout).toBe('')
    expect(out.stderr).toMatch(/^error: weights\.blue: "abc" is not an integer from 0 to 100\n\nusage: sluice ctl/)
  })

  test('help exits 0 with the usage on stdout', async () => {
    const { out, io } = capture()
    expect(await runCtl(['--help'], io)).toBe(0)
    expect(out.stdout).toMatch(/^usage: sluice ctl/)
    expect(out.stderr).toBe('')
  })

  test('an admin URL that is not http(s) is a usage error', async () => {
    for (const url of ['not a url', 'ftp://127.0.0.1:9901']) {
      const { out, io } = capture({ SLUICE_ADMIN_URL: url })
      expect(await runCtl(['state'], io)).toBe(2)
      expect(out.stderr).toContain(`SLUICE_ADMIN_URL "${url}"`)
    }
    const { out, io } = capture({ SLUICE_ADMIN_TIMEOUT_MS: 'soon' })
    expect(await runCtl(['state'], io)).toBe(2)
    expect(out.stderr).toContain('SLUICE_ADMIN_TIMEOUT_MS')
  })
})
