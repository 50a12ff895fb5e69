import { describe, expect, it } from 'vitest'
import { buildConfig } from '../../../src/config/load.js'
import { ConfigError, formatProblem } from '../../../src/errors.js'

const base = {
  versions: {
    blue: { instances: [{ url: 'http://127.0.0.1:3001' }] },
    green: { instances: [{ url: 'http://127.0.0.1:3002' }] },
  },
  weights: { blue: 100 },
}

function problems(rollout: Record<string, unknown>): string[] {
  try {
    buildConfig({ ...base, rollout: { baseline: 'blue', canary: 'green', steps: [{ weight: 100 }], ...rollout } }, 'x.yaml', {})
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map(formatProblem)
  }
}

describe('rollout gates, windows and notify in the config', () => {
  it('fills the defaults', () => {
    const c = buildConfig(
      {
        ...base,
        rollout: {
          baseline: 'blue',
          canary: 'green',
          steps: [{ weight: 50, approval: true }, { weight: 100 }],
          gates: [{ name: 'smoke', webhook: { url: 'https://ci.example/smoke' } }],
          windows: [{ from: '09:00', to: '17:00' }],
          notify: [{ url: 'https://hooks.example/x' }],
        },
      },
      'x.yaml',
      {},
    )
    expect(c.rollout!.steps[0]!.approval).toBe(true)
    expect(c.rollout!.gates![0]!.webhook).toEqual({ url: 'https://ci.example/smoke', timeoutMs: 5000, headers: {} })
    expect(c.rollout!.windows![0]!.timeZone).toBe('UTC')
    expect(c.rollout!.notify![0]).toEqual({
      url: 'https://hooks.example/x',
      format: 'json',
      headers: {},
      events: ['started', 'step', 'awaiting', 'paused', 'promoted', 'rolled_back'],
    })
  })

  it('reports every bad key with its path', () => {
    const out = problems({
      gates: [
        { name: 'a', webhook: { url: 'https://x.example' }, prometheus: { url: 'http://p:9090', query: 'up', min: 1 } },
        { name: 'b', prometheus: { url: 'http://p:9090', query: 'up' } },
        { name: 'b', webhook: { url: 'ftp://x' } },
        { name: 'c', prometheus: { url: 'http://p:9090', query: 'up', min: 2, max: 1 } },
      ],
      windows: [{ days: ['mon', 'fry'], from: '9:00', to: '24:00', timeZone: 'Mars/Olympus' }],
      notify: [{ url: 'https://hooks.example/x', events: ['started', 'finished'], format: 'teams' }],
      gateTimeoutMs: 0,
    })
    expect(out).toEqual(
      expect.arrayContaining([
        'rollout.gates.0: needs exactly one of webhook, prometheus',
        'rollout.gates.1.prometheus: needs min and/or max',
        'rollout.gates.2.webhook.url: must be an http:// or https:// URL',
        'rollout.gates.2.name: duplicate gate "b"',
        'rollout.gates.3.prometheus: min must not exceed max',
        expect.stringMatching(/^rollout\.windows\.0\.days\.1: /),
        'rollout.windows.0.from: must be HH:MM (00:00..23:59)',
        'rollout.windows.0.to: must be HH:MM (00:00..23:59)',
        'rollout.windows.0.timeZone: must be an IANA time zone this runtime knows',
        expect.stringMatching(/^rollout\.notify\.0\.events\.1: /),
        expect.stringMatching(/^rollout\.notify\.0\.format: /),
        expect.stringMatching(/^rollout\.gateTimeoutMs: /),
      ]),
    )
  })
})
