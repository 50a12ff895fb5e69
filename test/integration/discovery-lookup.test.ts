import { Resolver } from 'node:dns/promises'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DnsDiscovery } from '../../src/discovery/dns-discovery.js'
import { startDns, type TestDns } from '../helpers/dns-server.js'

describe('one lookup against a real dnsmasq', () => {
  let dns: TestDns
  let resolver: Resolver

  beforeAll(async () => {
    dns = await startDns(
      { 'both.sluice.test': ['127.0.0.2', '::1'], 't1.sluice.test': ['127.0.0.3'] },
      {
        '_http._tcp.svc.sluice.test': [
          { target: 't1.sluice.test', port: 8001 },
          { target: 'both.sluice.test', port: 80 },
        ],
        '_http._tcp.dangling.sluice.test': [{ target: 'nothing.sluice.test', port: 8001 }],
      },
    )
    resolver = new Resolver({ timeout: 300, tries: 1 })
    resolver.setServers([dns.server])
  })
  afterAll(() => dns.stop())

  const lookup = (spec: Record<string, unknown>) =>
    new DnsDiscovery({
      version: 'green',
      spec: { intervalMs: 1000, emptyAfter: 3, ...spec },
      resolver,
      log: pino({ level: 'silent' }),
      onAddresses: () => {},
      onError: () => {},
    }).lookup()

  it('A and AAAA together, IPv6 in brackets, with the shortest TTL', async () => {
    const r = await lookup({ dns: 'both.sluice.test', port: 8080 })
    expect(r.kind).toBe('answer')
    if (r.kind !== 'answer') return
    expect(r.urls.sort()).toEqual(['http://127.0.0.2:8080', 'http://[::1]:8080'])
    expect(r.ttlMs).toBe(0)
  })

  it('SRV: each target resolved, on its record port (port 80 is the http default)', async () => {
    const r = await lookup({ srv: '_http._tcp.svc.sluice.test' })
    expect(r.kind === 'answer' && r.urls.sort()).toEqual(['http://127.0.0.2', 'http://127.0.0.3:8001', 'http://[::1]'])
  })

  it('an unknown name and a target without addresses are empty answers, not failures', async () => {
    expect(await lookup({ dns: 'nope.sluice.test', port: 80 })).toEqual({ kind: 'empty' })
    expect(await lookup({ srv: '_http._tcp.nope.sluice.test' })).toEqual({ kind: 'empty' })
    expect(await lookup({ srv: '_http._tcp.dangling.sluice.test' })).toEqual({ kind: 'empty' })
  })

  it('a name the server refuses is a failure', async () => {
    expect(await lookup({ dns: 'elsewhere.example', port: 80 })).toEqual({ kind: 'failed', error: 'EREFUSED' })
  })
})
