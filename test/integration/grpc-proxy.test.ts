import * as grpc from '@grpc/grpc-js'
import { readFile } from 'node:fs/promises'
import { connect as http2Connect, createServer as createH2cServer, type Http2Server } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  echoClient,
  type EchoClientT,
  type GrpcBlueGreen,
  type GrpcUpstream,
  grpcBlueGreen,
  startGrpcUpstream,
  unaryCall,
} from '../helpers/grpc-upstream.js'
import { promtool } from '../helpers/promtool.js'
import { type TestCa, testCa } from '../helpers/tls-certs.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** README "gRPC": a real grpc-js client through the h2c listener to a real grpc-js server per version. */

/** A call's error, or fails the test when it succeeded. */
function errorOf(r: Awaited<ReturnType<typeof unaryCall>>): grpc.ServiceError {
  if (!('error' in r)) throw new Error(`expected an error, got ${JSON.stringify(r.value)}`)
  return r.error
}

function valueOf(r: Awaited<ReturnType<typeof unaryCall>>): any {
  if ('error' in r) throw r.error
  return r.value
}

/** One unary gRPC call over a raw node:http2 session: the response head, whether it ended the stream, the body bytes. */
async function rawGrpc(
  proxy: TestProxy,
  headers: Record<string, string>,
  message: unknown = {},
): Promise<{ headers: Record<string, unknown>; endedWithHead: boolean; body: number }> {
  const session = http2Connect(proxy.url)
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/sluice.test.Echo/Unary',
        'content-type': 'application/grpc',
        te: 'trailers',
        ...headers,
      })
      const out = { headers: {} as Record<string, unknown>, endedWithHead: false, body: 0 }
      stream.on('response', (h, flags) => {
        out.headers = h
        out.endedWithHead = (flags & 1) === 1 // END_STREAM on the HEADERS frame: trailers-only
      })
      stream.on('data', (c: Buffer) => (out.body += c.length))
      stream.on('close', () => resolve(out))
      stream.on('error', reject)
      const m = Buffer.from(JSON.stringify(message))
      const prefix = Buffer.alloc(5)
      prefix.writeUInt32BE(m.length, 1)
      stream.end(Buffer.concat([prefix, m]))
    })
  } finally {
    session.close()
  }
}

async function metricsText(proxy: TestProxy): Promise<string> {
  return (await fetch(proxy.adminUrl + '/metrics')).text()
}

describe('gRPC through sluice', () => {
  let blue: GrpcUpstream
  let green: GrpcUpstream
  let plain: TestUpstream
  /** An h2c upstream that never answers: the proxy's own deadline is what ends the call. */
  let hang: Http2Server
  let proxy: TestProxy
  let client: EchoClientT

  const viaVersion = (version: string) => ({ metadata: { 'x-version': version } })

  beforeAll(async () => {
    blue = await startGrpcUpstream('blue')
    green = await startGrpcUpstream('green')
    plain = await startUpstream('plain')
    hang = createH2cServer(() => {})
    await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve))
    const hangUrl = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`
    proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true },
      versions: {
        blue: { protocol: 'h2c', instances: [{ url: blue.url }] },
        green: { protocol: 'h2c', instances: [{ url: green.url }] },
        plain: { instances: [{ url: plain.url }] },
        hang: { protocol: 'h2c', instances: [{ url: hangUrl }] },
      },
      weights: { blue: 100 },
      sticky: { keys: ['header:x-user-id'] },
      overrides: ['green', 'plain', 'hang'].map((v) => ({ match: { header: 'x-version', value: v }, version: v })),
      retries: { attempts: 0 },
    })
    client = echoClient(proxy.url)
  })
  afterAll(async () => {
    client?.close()
    await proxy?.stop()
    await blue?.close()
    await green?.close()
    await plain?.close()
    await new Promise<void>((resolve) => (hang ? hang.close(() => resolve()) : resolve()))
  })

  it('unary: the answer, the response metadata and the request ID', async () => {
    const r = await unaryCall(client, { hello: 'world' }, { metadata: { 'x-user-id': 'u-1' } })
    expect(valueOf(r)).toEqual({ version: 'blue', echo: { hello: 'world' }, user: 'u-1' })
    if ('error' in r) return
    expect(r.headers.get('x-served-by')).toEqual(['blue'])
    expect(String(r.headers.get('x-request-id')[0])).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('server streaming: 2,000 messages of 8 KiB arrive whole and in order, read slowly', async () => {
    const call = (client as any).serverStream({ count: 2000, size: 8192 }) as grpc.ClientReadableStream<any>
    const seen: number[] = []
    let bytes = 0
    await new Promise<void>((resolve, reject) => {
      call.on('data', (m: { i: number; version: string; pad: string }) => {
        seen.push(m.i)
        bytes += m.pad.length
        // A slow reader: the proxy must hold the upstream back, not buffer the stream.
        if (m.i % 200 === 0) {
          call.pause()
          setTimeout(() => call.resume(), 20)
        }
      })
      call.on('end', resolve)
      call.on('error', reject)
    })
    expect(seen).toEqual(Array.from({ length: 2000 }, (_, i) => i))
    expect(bytes).toBe(2000 * 8192)
  })

  it('client streaming: 500 messages in, one answer out', async () => {
    const answer = new Promise<any>((resolve, reject) => {
      const call = (client as any).clientStream((err: Error | null, v: unknown) => (err ? reject(err) : resolve(v)))
      for (let n = 1; n <= 500; n++) call.write({ n })
      call.end()
    })
    expect(await answer).toEqual({ version: 'blue', count: 500, sum: 125_250 })
  })

  it('bidirectional streaming: each message echoed while the stream stays open', async () => {
    const call = (client as any).bidi() as grpc.ClientDuplexStream<any, any>
    const echoes: unknown[] = []
    // One message at a time: the next goes only after the previous came back, so both directions are live at once.
    for (let n = 0; n < 50; n++) {
      const next = new Promise<void>((resolve) => call.once('data', (m: unknown) => (echoes.push(m), resolve())))
      call.write({ n })
      await next
    }
    const ended = new Promise<void>((resolve) => call.on('end', resolve))
    call.end()
    await ended
    expect(echoes).toEqual(Array.from({ length: 50 }, (_, n) => ({ version: 'blue', echo: { n } })))
  })

  it('an INTERNAL status keeps its message and its trailing metadata, text and binary', async () => {
    const err = errorOf(await unaryCall(client, { fail: true }))
    expect(err.code).toBe(grpc.status.INTERNAL)
    expect(err.details).toBe('boom from blue')
    expect(err.metadata.get('x-detail')).toEqual(['the canary broke'])
    expect(err.metadata.get('x-detail-bin')).toEqual([Buffer.from([0, 1, 2, 255])])
  })

  it('an upstream trailers-only answer stays trailers-only (one HEADERS frame with END_STREAM)', async () => {
    const err = errorOf(await unaryCall(client, { failEarly: true }))
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED)
    expect(err.details).toBe('denied by blue')
    const answer = await rawGrpc(proxy, {}, { failEarly: true })
    expect(answer.headers[':status']).toBe(200)
    expect(answer.headers['grpc-status']).toBe('7')
    expect(answer).toMatchObject({ endedWithHead: true, body: 0 })
  })

  it('a version without an HTTP/2 path: UNAVAILABLE with the proxy error code; HTTP clients keep getting it', async () => {
    const err = errorOf(await unaryCall(client, {}, viaVersion('plain')))
    expect(err.code).toBe(grpc.status.UNAVAILABLE)
    expect(err.details).toMatch(/^SLUICE_NO_HTTP2_UPSTREAM: gRPC needs HTTP\/2 to the upstream; version "plain"/)
    expect(plain.hits).toBe(0)
    const res = await fetch(proxy.url + '/', { headers: { 'x-version': 'plain' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-upstream')).toBe('plain')
  })

  it('a raw HTTP/2 gRPC request to it: 502, trailers-only, grpc-status 14 and grpc-message', async () => {
    const answer = await rawGrpc(proxy, { 'x-version': 'plain' })
    expect(answer.headers[':status']).toBe(502)
    expect(answer.headers['grpc-status']).toBe('14')
    expect(String(answer.headers['grpc-message'])).toMatch(/^SLUICE_NO_HTTP2_UPSTREAM/)
    expect(answer).toMatchObject({ endedWithHead: true, body: 0 })
  })

  it('grpc-timeout is the call deadline in the proxy: a silent upstream ends in DEADLINE_EXCEEDED (504)', async () => {
    const started = Date.now()
    const answer = await rawGrpc(proxy, { 'grpc-timeout': '300m', 'x-version': 'hang' })
    // Well under timeouts.upstreamMs (30 s): the deadline is the call's.
    expect(Date.now() - started).toBeLessThan(5000)
    expect(answer.headers[':status']).toBe(504)
    expect(answer.headers['grpc-status']).toBe('4')
    // A grpc-js client's own deadline against a slow handler.
    const late = errorOf(await unaryCall(client, { sleepMs: 2000 }, { deadlineMs: 300 }))
    expect(late.code).toBe(grpc.status.DEADLINE_EXCEEDED)
  })

  it('weights split calls and a sticky metadata key keeps a user on one version', async () => {
    expect((await admin(proxy, 'PUT', '/v1/weights', { blue: 50, green: 50 })).status).toBe(200)
    try {
      const byUser = new Map<string, Set<string>>()
      const served = { blue: 0, green: 0 } as Record<string, number>
      for (let round = 0; round < 2; round++) {
        await Promise.all(
          Array.from({ length: 100 }, async (_, i) => {
            const user = `user-${i}`
            const v = valueOf(await unaryCall(client, {}, { metadata: { 'x-user-id': user } })) as { version: string }
            served[v.version] = (served[v.version] ?? 0) + 1
            if (!byUser.has(user)) byUser.set(user, new Set())
            byUser.get(user)!.add(v.version)
          }),
        )
      }
      for (const versions of byUser.values()) expect(versions.size).toBe(1)
      expect(served.blue).toBeGreaterThan(40)
      expect(served.green).toBeGreaterThan(40)
    } finally {
      await admin(proxy, 'PUT', '/v1/weights', { blue: 100 })
    }
  })

  it('/metrics counts gRPC calls with grpc_status, other requests without it', async () => {
    const text = await metricsText(proxy)
    expect(text).toMatch(/^sluice_requests_total\{version="blue",code="200",grpc_status="0"\} \d+$/m)
    expect(text).toMatch(/^sluice_requests_total\{version="blue",code="200",grpc_status="13"\} \d+$/m)
    expect(text).toMatch(/^sluice_requests_total\{version="blue",code="200",grpc_status="7"\} \d+$/m)
    expect(text).toMatch(/^sluice_requests_total\{version="hang",code="504",grpc_status="4"\} 1$/m)
    expect(text).toMatch(/^sluice_requests_total\{version="plain",code="200"\} \d+$/m)
    expect(text).toMatch(/^sluice_requests_total\{version="none",code="502"\} 2$/m)
    // Series with and without the label side by side still pass the checker.
    const checked = await promtool(['check', 'metrics'], text)
    expect(checked).toEqual({ code: 0, output: '' })
  })
})

describe('gRPC: mirroring and gRPC health probes', () => {
  let bg: GrpcBlueGreen

  beforeAll(async () => {
    bg = await grpcBlueGreen({
      mirror: { version: 'green', percent: 100, methods: ['POST'] },
      health: { grpc: true, intervalMs: 100, timeoutMs: 80, healthyThreshold: 1, unhealthyThreshold: 1 },
    })
  })
  afterAll(() => bg?.close())

  const healthOf = async () => {
    const s = (await admin(bg.proxy, 'GET', '/v1/state')).body
    return { blue: s.versions.blue.instances[0].healthy, green: s.versions.green.instances[0].healthy }
  }

  it('calls are copied to the mirror version while the users get the primary\'s answers', async () => {
    await expect.poll(healthOf).toEqual({ blue: true, green: true })
    for (let i = 0; i < 10; i++) expect(valueOf(await unaryCall(bg.client, { i }))).toMatchObject({ version: 'blue' })
    await expect.poll(() => bg.green.calls).toBe(10)
  })

  it('health.grpc asks grpc.health.v1.Health/Check: NOT_SERVING makes the instance unhealthy, SERVING healthy again', async () => {
    bg.green.serving = false
    await expect.poll(healthOf).toEqual({ blue: true, green: false })
    bg.green.serving = true
    await expect.poll(healthOf).toEqual({ blue: true, green: true })
  })
})

describe('gRPC over TLS on both sides', () => {
  let ca: TestCa
  let upstream: GrpcUpstream
  let proxy: TestProxy
  let client: EchoClientT

  beforeAll(async () => {
    ca = await testCa()
    const edge = await ca.issue(['localhost'])
    const inner = await ca.issue(['blue.internal'])
    upstream = await startGrpcUpstream('blue', {
      cert: await readFile(inner.cert, 'utf8'),
      key: await readFile(inner.key, 'utf8'),
    })
    proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true, tls: { cert: edge.cert, key: edge.key } },
      versions: {
        blue: { protocol: 'h2', instances: [{ url: upstream.url }], tls: { ca: ca.rootFile, servername: 'blue.internal' } },
      },
    })
    client = echoClient(`https://localhost:${proxy.port}`, ca.rootPem)
  })
  afterAll(async () => {
    client?.close()
    await proxy?.stop()
    await upstream?.close()
    await ca?.close()
  })

  it('a grpc-js client over TLS reaches a grpc-js server over verified TLS: answers, statuses and trailers', async () => {
    expect(valueOf(await unaryCall(client, { tls: true }))).toEqual({ version: 'blue', echo: { tls: true }, user: null })
    const err = errorOf(await unaryCall(client, { fail: true }))
    expect(err.code).toBe(grpc.status.INTERNAL)
    expect(err.metadata.get('x-detail')).toEqual(['the canary broke'])
    const text = await metricsText(proxy)
    expect(text).toMatch(/^sluice_requests_total\{version="blue",code="200",grpc_status="13"\} 1$/m)
  })
})
