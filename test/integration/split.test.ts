import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

describe('weighted sticky split through the real proxy', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    proxy = await startProxy({
      versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
      weights: { blue: 90, green: 10 },
      sticky: { keys: ['header:x-user-id'] },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await blue.close()
    await green.close()
  })

  it('keyless requests split 90/10 exactly over 100 requests', async () => {
    const counts: Record<string, number> = {}
    for (let i = 0; i < 100; i++) {
      const res = await fetch(proxy.url + '/')
      const name = res.headers.get('x-upstream')!
      counts[name] = (counts[name] ?? 0) + 1
      await res.text()
    }
    expect(counts).toEqual({ blue: 90, green: 10 })
  })

  it('a sticky key keeps its version across requests and a weight change to the other version', async () => {
    const first = await fetch(proxy.url + '/', { headers: { 'x-user-id': 'alice' } })
    const v = first.headers.get('x-upstream')
    await first.text()
    for (let i = 0; i < 20; i++) {
      const res = await fetch(proxy.url + '/', { headers: { 'x-user-id': 'alice' } })
      expect(res.headers.get('x-upstream')).toBe(v)
      await res.text()
    }
    const r = await admin(proxy, 'PUT', '/v1/weights', { blue: 0, green: 100 })
    expect(r.status).toBe(200)
    const res = await fetch(proxy.url + '/', { headers: { 'x-user-id': 'alice' } })
    expect(res.headers.get('x-upstream')).toBe('green')
    await res.text()
  })
})
