import * as grpc from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  echoClient,
  type EchoClientT,
  type GrpcBlueGreen,
  type GrpcUpstream,
  grpcBlueGreen,
  startGrpcUpstream,
  unaryCall,
} from '../helpers/grpc-upstream.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { auditEntry, metric } from './rollout-fixture.js'

/**
 * README "gRPC", "Canary analysis and rollouts": a canary whose handler
 * answers INTERNAL (HTTP 200, grpc-status 13) for a share of its calls is
 * rolled back by the analysis, as a canary answering 5xx is.
 */
describe('a gRPC canary judged on grpc-status', () => {
  let bg: GrpcBlueGreen
  let running = true
  let loops: Promise<void>[] = []
  const codes = new Map<number, number>()

  beforeAll(async () => {
    bg = await grpcBlueGreen({
      sticky: { keys: ['header:x-user-id'] },
      analysis: { intervalMs: 200, windowMs: 10_000, minRequests: 50 },
      outlier: { consecutiveFailures: 0 },
    })
    const { client, blue } = bg
    // Steady gRPC load from 4 loops, each call with a user key in its metadata.
    loops = Array.from({ length: 4 }, async (_, loop) => {
      for (let n = 0; running; n++) {
        const r = await unaryCall(client, { n }, { metadata: { 'x-user-id': `user-${loop}-${n % 25}` } })
        const code = 'error' in r ? r.error.code : grpc.status.OK
        codes.set(code, (codes.get(code) ?? 0) + 1)
      }
    })
    await vi.waitFor(() => expect(blue.calls, 'baseline traffic').toBeGreaterThan(100), { timeout: 10_000 })
  })
  afterAll(async () => {
    running = false
    await Promise.all(loops)
    await bg?.close()
  })

  it('20 % INTERNAL on the canary (HTTP 200 every time) rolls it back; the baseline takes every call again', async () => {
    const { blue, green, proxy } = bg
    const steps = [{ weight: 30, holdMs: 60_000 }, { weight: 100 }]
    const started = await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps })
    expect(started.status).toBe(201)
    await expect.poll(() => green.calls, { message: 'canary traffic' }).toBeGreaterThan(20)
    green.failShare = 0.2
    await expect
      .poll(async () => (await admin(proxy, 'GET', '/v1/state')).body.rollout.status, {
        message: 'the rollback',
        timeout: 30_000,
      })
      .toBe('rolled_back')
    const entry = await auditEntry(proxy, 'rollout.rollback')
    expect(entry.reason).toMatch(/error/)
    expect(await metric(proxy, 'sluice_rollbacks_total{version="green"}')).toBe(1)
    // The failures were HTTP 200 with grpc-status 13: counted under that label, never as a 5xx.
    expect(await metric(proxy, 'sluice_requests_total{version="green",code="200",grpc_status="13"}')).toBeGreaterThan(0)
    expect(await metric(proxy, 'sluice_requests_total{version="green",code="500"}')).toBeUndefined()
    expect(codes.get(grpc.status.INTERNAL)).toBeGreaterThan(0)
    const after = green.calls
    const blueBefore = blue.calls
    await expect.poll(() => blue.calls, { message: 'load after the rollback' }).toBeGreaterThan(blueBefore + 100)
    expect(green.calls).toBe(after)
  })
})

describe('outlier ejection on grpc-status', () => {
  let good: GrpcUpstream
  let bad: GrpcUpstream
  let proxy: TestProxy
  let client: EchoClientT

  beforeAll(async () => {
    good = await startGrpcUpstream('good')
    bad = await startGrpcUpstream('bad')
    bad.failShare = 1
    proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true },
      versions: { blue: { protocol: 'h2c', instances: [{ url: good.url }, { url: bad.url }] } },
      outlier: { consecutiveFailures: 3, ejectionMs: 60_000 },
    })
    client = echoClient(proxy.url)
  })
  afterAll(async () => {
    client?.close()
    await proxy?.stop()
    await good?.close()
    await bad?.close()
  })

  it('an instance answering INTERNAL (HTTP 200) is ejected; calls then go to the other', async () => {
    await expect
      .poll(async () => {
        await unaryCall(client, {})
        const s = (await admin(proxy, 'GET', '/v1/state')).body
        return s.versions.blue.instances.find((i: { url: string }) => i.url === bad.url).ejected
      })
      .toBe(true)
    const badCalls = bad.calls
    for (let i = 0; i < 20; i++) expect('error' in (await unaryCall(client, { i }))).toBe(false)
    expect(bad.calls).toBe(badCalls)
  })
})
