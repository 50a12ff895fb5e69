import { describe, expect, it } from 'vitest'
import { buildConfig } from '../../../src/config/load.js'
import { ConfigError } from '../../../src/errors.js'

function problems(raw: Record<string, unknown>): string[] {
  try {
    buildConfig(raw, undefined)
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map((p) => `${p.path}: ${p.message}`)
  }
}

const v = (discover: Record<string, unknown>) => ({ versions: { green: { discover } } })

describe('discover and resolver config', () => {
  it('accepts dns+port and srv, with defaults', () => {
    const c = buildConfig({ ...v({ dns: 'green.local', port: 8080 }), resolver: { servers: ['[::1]:5353', '127.0.0.1:53', '10.0.0.1'] } }, undefined)
    expect(c.versions[0]).toMatchObject({ name: 'green', instances: [], discover: { dns: 'green.local', port: 8080, intervalMs: 5000, emptyAfter: 3 } })
    expect(c.resolver).toEqual({ servers: ['[::1]:5353', '127.0.0.1:53', '10.0.0.1'], timeoutMs: 2000 })
    expect(problems(v({ srv: '_http._tcp.green.local' }))).toEqual([])
  })

  it.each([
    ['neither dns nor srv', v({ port: 80 }), ['versions.green.discover: needs exactly one of dns or srv']],
    ['both', v({ dns: 'a', srv: 'b', port: 80 }), ['versions.green.discover: needs exactly one of dns or srv', 'versions.green.discover.port: not allowed with srv (SRV records give the port)']],
    ['dns without port', v({ dns: 'a' }), ['versions.green.discover.port: required with dns']],
    [
      'h2 or tls with discovery (its instances are http://)',
      { versions: { green: { discover: { dns: 'a', port: 80 }, protocol: 'h2' }, blue: { discover: { dns: 'b', port: 80 }, tls: { verify: false } } } },
      [
        'versions.green.protocol: h2 needs https:// instances; discovery finds http:// ones',
        'versions.blue.tls: applies to https:// instances; discovery finds http:// ones',
      ],
    ],
    ['srv with port', v({ srv: 'a', port: 80 }), ['versions.green.discover.port: not allowed with srv (SRV records give the port)']],
    ['an unknown key', v({ dns: 'a', port: 80, ttl: 5 }), ['versions.green.discover.ttl: unknown key']],
    ['emptyAfter 0', v({ dns: 'a', port: 80, emptyAfter: 0 }), ['versions.green.discover.emptyAfter: Too small: expected number to be >=1']],
    ['intervalMs under 100', v({ dns: 'a', port: 80, intervalMs: 50 }), ['versions.green.discover.intervalMs: Too small: expected number to be >=100']],
    ['no instances and no discover', { versions: { green: {} } }, ['versions.green.instances: needs at least one instance, or discover']],
    ['a resolver server with a name', { ...v({ dns: 'a', port: 80 }), resolver: { servers: ['dns.local:53'] } }, ['resolver.servers.0: must be an IP address, "v4:port" or "[v6]:port"']],
    ['a bare v6 with a port and no brackets', { ...v({ dns: 'a', port: 80 }), resolver: { servers: ['[::1]'] } }, ['resolver.servers.0: must be an IP address, "v4:port" or "[v6]:port"']],
  ])('refuses %s, naming the key', (_, raw, expected) => {
    expect(problems(raw)).toEqual(expected)
  })
})
