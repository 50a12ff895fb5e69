import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { loadConfigFile } from '../../src/config/load.js'
import { configSchema } from '../../src/config/schema.js'
import { runValidate } from '../../src/cli/validate.js'
import { inProcess, ROOT } from '../helpers/cli.js'

const ENV = {
  SLUICE_ADMIN_TOKEN: 'admin-secret',
  SLUICE_DEPLOY_TOKEN: 'deploy-secret',
  REDIS_URL: 'redis://127.0.0.1:6390/2',
  CI_TOKEN: 'ci-secret',
  SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T000/B000/XXXX',
}
const EXAMPLES = [
  'blue-green.yaml',
  'canary-rollout.yaml',
  'redis-cluster.yaml',
  'canary-gates.yaml',
  'discovery.yaml',
  'tls-http2.yaml',
  'grpc-canary.yaml',
]
const file = (name: string) => `${ROOT}config/${name}`

/** Key paths of a zod schema, down through objects, defaults and arrays of objects (records are leaves). */
function schemaPaths(schema: unknown, prefix = ''): string[] {
  let s = schema as { _zod: { def: Record<string, any> }; shape?: Record<string, unknown> }
  while (['default', 'prefault', 'optional', 'nullable'].includes(s._zod.def.type)) s = s._zod.def.innerType
  if (s._zod.def.type === 'array') return schemaPaths(s._zod.def.element, `${prefix}[]`)
  if (s._zod.def.type !== 'object') return []
  const shape = s._zod.def.shape as Record<string, unknown>
  return Object.entries(shape).flatMap(([k, v]) => {
    const p = prefix ? `${prefix}.${k}` : k
    return [p, ...schemaPaths(v, p)]
  })
}

function yamlPaths(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v) => yamlPaths(v, `${prefix}[]`))
  if (value === null || typeof value !== 'object') return []
  return Object.entries(value).flatMap(([k, v]) => {
    const p = prefix ? `${prefix}.${k}` : k
    return [p, ...yamlPaths(v, p)]
  })
}

describe('the example configs in config/', () => {
  it.each(EXAMPLES)('sluice validate says ok for %s with its environment set', async (name) => {
    const r = await inProcess((io) => runValidate(['--config', file(name)], io), ENV)
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'ok\n', stderr: '' })
  })

  it('blue-green.yaml puts every request on blue, with green reachable by override', async () => {
    const c = await loadConfigFile(file('blue-green.yaml'), ENV)
    expect(c.weights).toEqual({ blue: 100, green: 0 })
    expect(c.versions.map((v) => [v.name, v.instances.length])).toEqual([
      ['blue', 2],
      ['green', 2],
    ])
    expect(c.overrides).toEqual([{ kind: 'header', name: 'x-sluice-version', value: 'green', version: 'green' }])
    expect(c.admin.tokens).toEqual([{ name: 'admin', token: 'admin-secret' }])
  })

  it('canary-rollout.yaml has a rollout of green against blue that ends in promotion', async () => {
    const c = await loadConfigFile(file('canary-rollout.yaml'), ENV)
    expect(c.rollout).toMatchObject({ baseline: 'blue', canary: 'green', onBreach: 'rollback', autoStart: false })
    expect(c.rollout!.steps.map((s) => s.weight)).toEqual([5, 25, 50, 100])
    expect(c.weights).toEqual({ blue: 100, green: 0 })
  })

  it('canary-gates.yaml waits for approvals at 25 and 50, checks two gates in working hours and tells Slack', async () => {
    const c = await loadConfigFile(file('canary-gates.yaml'), ENV)
    const r = c.rollout!
    expect(r.steps.map((s) => [s.weight, s.approval ?? false])).toEqual([
      [5, false],
      [25, true],
      [50, true],
      [100, false],
    ])
    expect(r.gates!.map((g) => g.name)).toEqual(['smoke', 'conversion'])
    expect(r.gates![0]!.webhook!.headers).toEqual({ authorization: 'Bearer ci-secret' })
    expect(r.windows![0]).toMatchObject({ timeZone: 'Europe/Berlin', from: '09:00', to: '16:00' })
    expect(r.notify![0]).toMatchObject({ url: ENV.SLACK_WEBHOOK_URL, format: 'slack' })
  })

  it('grpc-canary.yaml reaches blue over h2c and green over verified h2, and judges calls on their grpc-status', async () => {
    const c = await loadConfigFile(file('grpc-canary.yaml'), ENV)
    expect(c.versions.map((v) => [v.name, v.transport.protocol, v.transport.servername ?? null])).toEqual([
      ['blue', 'h2c', null],
      ['green', 'h2', 'green.internal'],
    ])
    expect(c.versions[1]!.transport.ca).toContain('-----BEGIN CERTIFICATE-----')
    expect(c.analysis.grpcErrorCodes).toEqual([2, 4, 12, 13, 14, 15])
    expect(c.health?.grpc).toBe(true)
  })

  it('redis-cluster.yaml takes Redis and its tokens from the environment', async () => {
    const c = await loadConfigFile(file('redis-cluster.yaml'), ENV)
    expect(c.redis).toMatchObject({ url: 'redis://127.0.0.1:6390/2', keyPrefix: 'sluice:shop:' })
    expect(c.admin.host).toBe('0.0.0.0')
    expect(c.admin.tokens).toEqual([
      { name: 'admin', token: 'admin-secret' },
      { name: 'deploy-bot', token: 'deploy-secret' },
    ])
  })

  it('redis-cluster.yaml without REDIS_URL is refused, naming the key and the variable', async () => {
    const r = await inProcess((io) => runValidate(['--config', file('redis-cluster.yaml')], io), {
      ...ENV,
      REDIS_URL: undefined,
    })
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('config error: redis.url: environment variable REDIS_URL is not set\n')
  })

  it('discovery.yaml discovers blue by A/AAAA and green by SRV beside a static instance', async () => {
    const c = await loadConfigFile(file('discovery.yaml'), ENV)
    expect(c.resolver).toEqual({ servers: ['10.96.0.10:53'], timeoutMs: 2000 })
    expect(c.versions.map((v) => [v.name, v.instances, v.discover])).toEqual([
      ['blue', [], { dns: 'blue.shop.svc.cluster.local', port: 8080, intervalMs: 5000, emptyAfter: 3 }],
      ['green', ['http://10.0.0.20:8080'], { srv: '_http._tcp.green.shop.service.consul', intervalMs: 5000, emptyAfter: 3 }],
    ])
  })

  it('together the examples show every config key (the README points readers at them)', () => {
    const shown = new Set(EXAMPLES.flatMap((name) => yamlPaths(parseYaml(readFileSync(file(name), 'utf8')))))
    const missing = schemaPaths(configSchema).filter((p) => !shown.has(p))
    expect(missing).toEqual([])
  })
})
