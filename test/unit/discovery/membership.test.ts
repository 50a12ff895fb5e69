import fc from 'fast-check'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildConfig } from '../../../src/config/load.js'
import { diffMembers, wantedMembers } from '../../../src/discovery/membership.js'
import { Sluice } from '../../../src/lifecycle/sluice.js'
import { hashString } from '../../../src/routing/hash.js'
import type { Instance } from '../../../src/routing/instance.js'

describe('wantedMembers', () => {
  it('a URL belongs to one version: config first, then the admin API, then discovery', () => {
    const wanted = wantedMembers(
      [
        { name: 'blue', instances: ['http://a'] },
        { name: 'green', instances: [] },
      ],
      [
        { version: 'green', url: 'http://a' },
        { version: 'green', url: 'http://b' },
        { version: 'gone', url: 'http://z' },
      ],
      new Map([
        ['green', { source: 'dns' as const, urls: ['http://b', 'http://c'] }],
        ['blue', { source: 'srv' as const, urls: ['http://c', 'http://d'] }],
      ]),
    )
    expect(Object.fromEntries([...wanted].map(([v, m]) => [v, Object.fromEntries(m)]))).toEqual({
      blue: { 'http://a': 'config', 'http://c': 'srv', 'http://d': 'srv' },
      green: { 'http://b': 'api' },
    })
  })

  it('diffMembers: what joins and what leaves', () => {
    const want = new Map([
      ['http://b', 'dns' as const],
      ['http://c', 'dns' as const],
    ])
    expect(diffMembers(['http://a', 'http://b'], want)).toEqual({ add: ['http://c'], gone: ['http://a'] })
  })
})

describe('membership changes through the proxy core', () => {
  const POOL = Array.from({ length: 8 }, (_, i) => `http://127.0.0.${i + 2}:8080`)
  const KEYS = Array.from({ length: 2000 }, (_, i) => hashString(`user-${i}`))
  let sluice: Sluice

  beforeAll(async () => {
    const config = buildConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0 },
        versions: { green: { discover: { dns: 'green.invalid', port: 8080 } } },
        log: { level: 'silent' },
      },
      undefined,
    )
    sluice = new Sluice(config, { log: pino({ level: 'silent' }) })
    await sluice.start()
  })
  afterAll(() => sluice.stop())

  function owners(): Map<number, Instance> {
    const t = sluice.routing.table
    const route = t.routes[0]!
    const out = new Map<number, Instance>()
    if (route.usable.length === 0) return out
    for (const k of KEYS) out.set(k, t.chooseInstance(route, k)!)
    return out
  }

  it('sticky keys of the instances that stay move only onto joining instances, and staying instances keep their pools', () => {
    const membership = fc.uniqueArray(fc.constantFrom(...POOL), { minLength: 1, maxLength: POOL.length })
    fc.assert(
      fc.property(fc.array(membership, { minLength: 2, maxLength: 6 }), (steps) => {
        sluice.setDiscovered('green', { source: 'dns', urls: steps[0]! })
        for (const urls of steps.slice(1)) {
          const before = owners()
          const pools = new Map(sluice.versions[0]!.instances.map((i) => [i.url, i.pool]))
          sluice.setDiscovered('green', { source: 'dns', urls })
          const after = owners()
          const now = new Set(sluice.versions[0]!.instances.map((i) => i.url))
          expect(now).toEqual(new Set(urls))
          // A key whose instance stays keeps it, unless it moves onto an instance that just joined.
          const joined = new Set(urls.filter((u) => !pools.has(u)))
          for (const [key, inst] of before) {
            const to = after.get(key)!.url
            if (now.has(inst.url) && to !== inst.url) expect(joined).toContain(to)
          }
          for (const i of sluice.versions[0]!.instances) {
            if (pools.has(i.url)) expect(i.pool).toBe(pools.get(i.url))
            expect(sluice.sourceOf(i)).toBe('dns')
          }
        }
      }),
      { numRuns: 60 },
    )
  })

  it('an address that leaves with work in flight drains, and one that comes back before it left keeps its pool', () => {
    sluice.setDiscovered('green', { source: 'dns', urls: [POOL[0]!, POOL[1]!] })
    const busy = sluice.versions[0]!.instances.find((i) => i.url === POOL[1])!
    const pool = busy.pool
    busy.inflight = 1
    sluice.setDiscovered('green', { source: 'dns', urls: [POOL[0]!] })
    expect(sluice.versions[0]!.instances).toContain(busy)
    expect(busy.draining).toBe(true)
    expect(sluice.routing.table.routes[0]!.usable.map((i) => i.url)).toEqual([POOL[0]])
    // Back within the drain: the same instance, the same pool, taking traffic again.
    sluice.setDiscovered('green', { source: 'dns', urls: [POOL[0]!, POOL[1]!] })
    expect(busy.draining).toBe(false)
    expect(busy.pool).toBe(pool)
    expect(sluice.routing.table.routes[0]!.usable).toContain(busy)
    busy.inflight = 0
  })
})

describe('a DNS flap within a probe interval', () => {
  it('an idle discovered address that disappears and returns is the same instance, pool and all', async () => {
    const config = buildConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0 },
        versions: { green: { discover: { dns: 'green.invalid', port: 8080 } } },
        health: { intervalMs: 60_000, timeoutMs: 100 },
        log: { level: 'silent' },
      },
      undefined,
    )
    const sluice = new Sluice(config, { log: pino({ level: 'silent' }) })
    await sluice.start()
    try {
      const [a, b] = ['http://127.0.0.2:8080', 'http://127.0.0.3:8080']
      sluice.setDiscovered('green', { source: 'dns', urls: [a, b] })
      const inst = sluice.versions[0]!.instances.find((i) => i.url === b)!
      const pool = inst.pool
      sluice.setDiscovered('green', { source: 'dns', urls: [a] })
      // Idle, but kept draining for one probe interval.
      expect(sluice.versions[0]!.instances).toContain(inst)
      expect(inst.draining).toBe(true)
      sluice.setDiscovered('green', { source: 'dns', urls: [a, b] })
      expect(sluice.versions[0]!.instances.find((i) => i.url === b)).toBe(inst)
      expect(inst.pool).toBe(pool)
      expect(inst.draining).toBe(false)
    } finally {
      await sluice.stop()
    }
  })
})
