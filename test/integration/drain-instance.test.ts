import type { IncomingMessage, ServerResponse } from 'node:http'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DeployFixture, keysLandingOn, startDeployFixture, upstreamOf } from '../helpers/deploy-fixture.js'
import { instanceState, waitForInstance } from '../helpers/instance-state.js'
import { admin } from '../helpers/proxy.js'
import { describeFailures, failed, moreRequests, recordedLoad } from '../helpers/recorded-load.js'

/** `/hold` answers only on `release()`; `aborted` counts held requests whose client went away first. */
function holdingUpstream(name: string) {
  const held: ServerResponse[] = []
  const stats = { aborted: 0 }
  const answer = (res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
    res.end(JSON.stringify({ name }))
  }
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    if (req.url !== '/hold') return answer(res)
    held.push(res)
    res.on('close', () => {
      if (!res.writableFinished) stats.aborted++
    })
  }
  const release = () => {
    for (const res of held.splice(0)) if (!res.destroyed) answer(res)
  }
  return { name, stats, handler, release }
}

describe('draining an instance', () => {
  const b1 = holdingUpstream('b1')
  let f: DeployFixture

  beforeAll(async () => {
    f = await startDeployFixture({ blue: [b1, { name: 'b2' }] })
  })
  afterAll(() => f.close())

  it('lets held in-flight requests finish, sends it nothing new, moves its sticky keys and takes them back on undrain', async () => {
    const { proxy } = f
    const u1 = f.ups.blue![0]!
    const keys = await keysLandingOn(proxy.url, 'b1', 6)
    const held = keys.slice(0, 4).map((key) =>
      request(`${proxy.url}/hold`, { headers: { 'x-user-id': key } }).then(async (res) => ({
        status: res.statusCode,
        body: (await res.body.json()) as { name: string },
      })),
    )
    await waitForInstance(proxy, 'blue', 0, (i) => i.inflight === 4, 'four held requests in flight on b1')
    const load = recordedLoad({ url: proxy.url })
    await moreRequests(load.records, 100)

    const drained = await admin(proxy, 'POST', '/v1/drain', { url: u1.url })
    expect(drained.status).toBe(200)
    const drainedAt = performance.now()
    // Requests routed before the drain may still reach b1; count from when they are all done.
    const sentBefore = load.records.filter((r) => r.sentAt < drainedAt)
    await expect
      .poll(() => sentBefore.every((r) => r.doneAt > 0), { message: 'requests sent before the drain done' })
      .toBeTruthy()
    const hitsAtDrain = u1.hits
    expect(await instanceState(proxy, 'blue', 0)).toMatchObject({
      draining: true,
      usable: false,
      healthy: true,
      inflight: 4,
    })

    // The moved keys now land on b2.
    for (const key of keys) expect(await upstreamOf(proxy.url, key)).toBe('b2')
    await moreRequests(load.records, 100)
    b1.release()
    const results = await Promise.all(held)
    expect(results.map((r) => `${r.status} ${r.body.name}`)).toEqual(Array(4).fill('200 b1'))
    await waitForInstance(proxy, 'blue', 0, (i) => i.inflight === 0, 'inflight on b1 falls to 0')
    await moreRequests(load.records, 200)
    expect(u1.hits).toBe(hitsAtDrain)

    const undrained = await admin(proxy, 'POST', '/v1/undrain', { url: u1.url })
    expect(undrained.status).toBe(200)
    const undrainedAt = performance.now()
    expect(await instanceState(proxy, 'blue', 0)).toMatchObject({ draining: false, usable: true })
    for (const key of keys) expect(await upstreamOf(proxy.url, key)).toBe('b1')
    await moreRequests(load.records, 200)
    const records = await load.stop()

    expect(failed(records).length, describeFailures(records)).toBe(0)
    const whileDrained = records.filter((r) => r.sentAt > drainedAt && r.doneAt < undrainedAt)
    expect(whileDrained.length).toBeGreaterThan(100)
    expect(new Set(whileDrained.map((r) => r.upstream))).toEqual(new Set(['b2']))
    expect(records.filter((r) => r.sentAt > undrainedAt).some((r) => r.upstream === 'b1')).toBe(true)
    expect(b1.stats.aborted).toBe(0)
  })

  it('answers 404 for an unknown instance or version', async () => {
    expect((await admin(f.proxy, 'POST', '/v1/drain', { url: 'http://127.0.0.1:1' })).status).toBe(404)
    expect((await admin(f.proxy, 'POST', '/v1/drain', { version: 'nope' })).status).toBe(404)
  })
})

describe('draining a whole version', () => {
  let f: DeployFixture

  beforeAll(async () => {
    f = await startDeployFixture(
      { blue: [{ name: 'blue' }], green: [{ name: 'green' }] },
      { weights: { blue: 50, green: 50 } },
    )
  })
  afterAll(() => f.close())

  it('passes its share to the other version without a failure, and takes it back on undrain', async () => {
    const { proxy } = f
    const load = recordedLoad({ url: proxy.url })
    await moreRequests(load.records, 200)
    expect((await admin(proxy, 'POST', '/v1/drain', { version: 'green' })).status).toBe(200)
    const drainedAt = performance.now()
    const state = await admin(proxy, 'GET', '/v1/state')
    expect(state.body.versions.green.draining).toBe(true)
    expect(state.body.versions.green.instances[0].draining).toBe(true)
    await moreRequests(load.records, 300)
    expect((await admin(proxy, 'POST', '/v1/undrain', { version: 'green' })).status).toBe(200)
    const undrainedAt = performance.now()
    await moreRequests(load.records, 300)
    const records = await load.stop()

    expect(failed(records).length, describeFailures(records)).toBe(0)
    const whileDrained = records.filter((r) => r.sentAt > drainedAt && r.doneAt < undrainedAt)
    expect(new Set(whileDrained.map((r) => r.upstream))).toEqual(new Set(['blue']))
    const after = records.filter((r) => r.sentAt > undrainedAt)
    expect(new Set(after.map((r) => r.upstream))).toEqual(new Set(['blue', 'green']))
  })
})

describe('a drain that outlasts drain.timeoutMs', () => {
  const b1 = holdingUpstream('b1')
  let f: DeployFixture

  beforeAll(async () => {
    f = await startDeployFixture({ blue: [b1, { name: 'b2' }] }, { drain: { timeoutMs: 300 } })
  })
  afterAll(() => f.close())

  it('cancels what is still in flight: a POST gets a clean 502 and the upstream sees its request end', async () => {
    const { proxy } = f
    const [key] = await keysLandingOn(proxy.url, 'b1', 1)
    const post = request(`${proxy.url}/hold`, {
      method: 'POST',
      headers: { 'x-user-id': key!, 'content-type': 'application/json' },
      body: '{"a":1}',
    })
    await waitForInstance(proxy, 'blue', 0, (i) => i.inflight === 1, 'the POST in flight on b1')
    expect((await admin(proxy, 'POST', '/v1/drain', { url: f.ups.blue![0]!.url })).status).toBe(200)
    const res = await post
    expect(res.statusCode).toBe(502)
    expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('SLUICE_UPSTREAM_FAILED')
    await expect.poll(() => b1.stats.aborted, { message: 'the upstream sees the request cancelled' }).toBe(1)
    await waitForInstance(proxy, 'blue', 0, (i) => i.inflight === 0, 'nothing left in flight')
  })
})
