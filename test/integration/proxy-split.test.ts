import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** Sends one request per header set (at most `concurrency` at once) and returns each answering upstream's name. */
async function names(url: string, headerSets: Record<string, string>[], concurrency = 16): Promise<string[]> {
  const dispatcher = new Agent({ connections: concurrency })
  const out = new Array<string>(headerSets.length)
  let next = 0
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < headerSets.length) {
          const i = next++
          const res = await request(url, { headers: headerSets[i]!, dispatcher })
          await res.body.dump()
          out[i] = `${res.statusCode} ${res.headers['x-upstream']}`
        }
      }),
    )
  } finally {
    await dispatcher.close()
  }
  return out
}

function count(xs: string[]): Record<string, number> {
  const m: Record<string, number> = {}
  for (const x of xs) m[x] = (m[x] ?? 0) + 1
  return m
}

describe('split and overrides through the real proxy', () => {
  const up: Record<string, TestUpstream> = {}
  let proxy: TestProxy

  beforeAll(async () => {
    for (const n of ['blue-a', 'blue-b', 'green-a', 'red-a']) up[n] = await startUpstream(n)
    proxy = await startProxy({
      versions: {
        blue: { instances: [{ url: up['blue-a']!.url }, { url: up['blue-b']!.url }] },
        green: { instances: [{ url: up['green-a']!.url }] },
        red: { instances: [{ url: up['red-a']!.url }] },
      },
      weights: { blue: 90, green: 10 },
      sticky: { keys: ['header:x-user-id', 'cookie:session'] },
      overrides: [
        { match: { header: 'x-canary', value: 'true' }, version: 'green' },
        { match: { cookie: 'lane', value: 'red' }, version: 'red' },
      ],
    })
  })
  afterAll(async () => {
    await proxy.stop()
    for (const u of Object.values(up)) await u.close()
  })

  it('10,000 sticky keys split 90/10 within 1.5 points, and each key returns to its instance', async () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => ({ 'x-user-id': `user-${i}` }))
    const first = await names(`${proxy.url}/`, keys)
    const byVersion = count(first.map((n) => n.replace(/-[ab]$/, '')))
    expect(Object.keys(byVersion).sort()).toEqual(['200 blue', '200 green'])
    expect(Math.abs(byVersion['200 blue']! / 100 - 90)).toBeLessThan(1.5)
    expect(Math.abs(byVersion['200 green']! / 100 - 10)).toBeLessThan(1.5)
    // Both blue instances take a share.
    const byInstance = count(first)
    expect(byInstance['200 blue-a']).toBeGreaterThan(3000)
    expect(byInstance['200 blue-b']).toBeGreaterThan(3000)
    // Stickiness: the same 1,000 keys again, and by cookie instead of header, land where they did.
    const again = await names(`${proxy.url}/`, keys.slice(0, 1000))
    expect(again).toEqual(first.slice(0, 1000))
    const byCookie = await names(
      `${proxy.url}/`,
      keys.slice(0, 300).map((k) => ({ cookie: `theme=dark; session=${k['x-user-id']}` })),
    )
    expect(byCookie).toEqual(first.slice(0, 300))
  })

  it('a header override and a cookie override pick their version whatever the key', async () => {
    const canary = await names(
      `${proxy.url}/`,
      Array.from({ length: 50 }, (_, i) => ({ 'x-canary': 'true', 'x-user-id': `user-${i}` })),
    )
    expect(count(canary)).toEqual({ '200 green-a': 50 })
    const red = await names(
      `${proxy.url}/`,
      Array.from({ length: 50 }, (_, i) => ({ cookie: `lane=red; session=user-${i}` })),
    )
    expect(count(red)).toEqual({ '200 red-a': 50 })
  })

  it('an override to a version with nothing usable falls through to the weights', async () => {
    expect((await admin(proxy, 'POST', '/v1/drain', { version: 'red' })).status).toBe(200)
    try {
      const keys = Array.from({ length: 200 }, (_, i) => ({ cookie: `lane=red; session=user-${i}` }))
      const plain = await names(
        `${proxy.url}/`,
        keys.map((k) => ({ cookie: k.cookie.replace('lane=red; ', '') })),
      )
      expect(await names(`${proxy.url}/`, keys)).toEqual(plain)
      expect(plain.some((n) => n.includes('red'))).toBe(false)
    } finally {
      await admin(proxy, 'POST', '/v1/undrain', { version: 'red' })
    }
  })

  it('a weighted version with nothing usable passes its share to the others in proportion', async () => {
    expect((await admin(proxy, 'PUT', '/v1/weights', { blue: 60, green: 20, red: 20 })).status).toBe(200)
    expect((await admin(proxy, 'POST', '/v1/drain', { version: 'red' })).status).toBe(200)
    try {
      // Keyless: smooth weighted round-robin over the remaining 60:20 is exact per 80 requests.
      const keyless = await names(
        `${proxy.url}/`,
        Array.from({ length: 160 }, () => ({})),
        1,
      )
      expect(count(keyless.map((n) => n.replace(/-[ab]$/, '')))).toEqual({ '200 blue': 120, '200 green': 40 })
      // Sticky: 3:1 within 1.5 points.
      const sticky = await names(
        `${proxy.url}/`,
        Array.from({ length: 4000 }, (_, i) => ({ 'x-user-id': `user-${i}` })),
      )
      const byVersion = count(sticky.map((n) => n.replace(/-[ab]$/, '')))
      expect(Object.keys(byVersion).sort()).toEqual(['200 blue', '200 green'])
      expect(Math.abs(byVersion['200 blue']! / 40 - 75)).toBeLessThan(1.5)
    } finally {
      await admin(proxy, 'POST', '/v1/undrain', { version: 'red' })
      await admin(proxy, 'PUT', '/v1/weights', { blue: 90, green: 10 })
    }
  })
})

describe('weighted sticky split between two versions', () => {
  let f: BlueGreen

  beforeAll(async () => {
    f = await blueGreen({ weights: { blue: 90, green: 10 }, sticky: { keys: ['header:x-user-id'] } })
  })
  afterAll(() => f?.close())

  it('keyless requests split 90/10 exactly over 100 requests', async () => {
    const keyless = await names(`${f.proxy.url}/`, Array.from({ length: 100 }, () => ({})), 1)
    expect(count(keyless)).toEqual({ '200 blue': 90, '200 green': 10 })
  })

  it('a sticky key keeps its version across requests and a weight change to the other version', async () => {
    const alice = Array.from({ length: 21 }, () => ({ 'x-user-id': 'alice' }))
    const before = await names(`${f.proxy.url}/`, alice, 1)
    expect(new Set(before).size).toBe(1)
    expect((await admin(f.proxy, 'PUT', '/v1/weights', { blue: 0, green: 100 })).status).toBe(200)
    expect(await names(`${f.proxy.url}/`, alice.slice(0, 1), 1)).toEqual(['200 green'])
  })
})
