import type { ServerResponse } from 'node:http'
import { type AddressInfo, createServer, type Server } from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { rawExchange, refusedUrl } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const VERSIONS = ['refusing', 'hanging', 'garbage', 'live']

describe("the proxy's own answers", () => {
  let refused: string
  let hang: TestUpstream
  let live: TestUpstream
  let garbage: Server
  const hung: ServerResponse[] = []
  let proxy: TestProxy

  beforeAll(async () => {
    refused = await refusedUrl()
    hang = await startUpstream('hang', (req, res) => {
      req.resume()
      hung.push(res)
    })
    live = await startUpstream('live')
    garbage = createServer((socket) => {
      socket.on('error', () => {})
      socket.once('data', () => socket.end('HTTP/1.1 2000 What\r\n\r\n'))
    })
    await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', r))
    proxy = await startProxy({
      versions: {
        refusing: { instances: [{ url: refused }] },
        hanging: { instances: [{ url: hang.url }] },
        garbage: { instances: [{ url: `http://127.0.0.1:${(garbage.address() as AddressInfo).port}` }] },
        live: { instances: [{ url: live.url }] },
      },
      weights: { live: 100 },
      overrides: [
        { match: { header: 'x-version', value: 'refusing' }, version: 'refusing' },
        { match: { header: 'x-version', value: 'hanging' }, version: 'hanging' },
        { match: { header: 'x-version', value: 'garbage' }, version: 'garbage' },
      ],
      outlier: { consecutiveFailures: 0 },
      timeouts: { upstreamMs: 300 },
      retries: { attempts: 0 },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    for (const res of hung) res.destroy()
    await hang.close()
    await live.close()
    await new Promise((r) => garbage.close(r))
  })

  async function get(headers: Record<string, string> = {}) {
    const res = await request(`${proxy.url}/own`, { headers })
    return {
      status: res.statusCode,
      type: res.headers['content-type'],
      cache: res.headers['cache-control'],
      body: (await res.body.json()) as { error: { code: string; message: string } },
    }
  }

  it('502 SLUICE_UPSTREAM_FAILED when the upstream fails (connection refused), naming no address or library error', async () => {
    const r = await get({ 'x-version': 'refusing' })
    expect(r).toEqual({
      status: 502,
      type: 'application/json',
      cache: 'no-store',
      body: { error: { code: 'SLUICE_UPSTREAM_FAILED', message: 'could not connect to the upstream', requestId: expect.any(String) } },
    })
    const text = JSON.stringify(r.body)
    for (const internal of [new URL(refused).port, '127.0.0.1', 'ECONNREFUSED', 'UND_ERR']) expect(text).not.toContain(internal)
  })

  it('502 for an upstream that answers garbage: a short message, no parser error text', async () => {
    const r = await get({ 'x-version': 'garbage' })
    expect(r.status).toBe(502)
    expect(r.body).toEqual({ error: { code: 'SLUICE_UPSTREAM_FAILED', message: 'the upstream failed to answer', requestId: expect.any(String) } })
  })

  it('504 SLUICE_UPSTREAM_TIMEOUT when the headers do not come within timeouts.upstreamMs', async () => {
    expect(await get({ 'x-version': 'hanging' })).toEqual({
      status: 504,
      type: 'application/json',
      cache: 'no-store',
      body: {
        error: { code: 'SLUICE_UPSTREAM_TIMEOUT', message: 'the upstream did not answer in time', requestId: expect.any(String) },
      },
    })
  })

  it('503 SLUICE_NO_USABLE_INSTANCE when no version has a usable instance', async () => {
    for (const version of VERSIONS) expect((await admin(proxy, 'POST', '/v1/drain', { version })).status).toBe(200)
    try {
      expect(await get()).toEqual({
        status: 503,
        type: 'application/json',
        cache: 'no-store',
        body: { error: { code: 'SLUICE_NO_USABLE_INSTANCE', message: 'no usable instance in any version', requestId: expect.any(String) } },
      })
    } finally {
      for (const version of VERSIONS) await admin(proxy, 'POST', '/v1/undrain', { version })
    }
    expect((await get()).status).toBe(200)
  })
  it('CONNECT gets 405 with the JSON error body, not a dropped connection', async () => {
    const r = await rawExchange(proxy.port, ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'])
    expect(r.status).toBe(405)
    expect(r.headers['content-type']).toBe('application/json')
    expect(JSON.parse(r.body)).toEqual({
      error: { code: 'SLUICE_METHOD_NOT_ALLOWED', message: 'CONNECT is not supported by a reverse proxy' },
    })
    expect(r.closed).toBe(true)
  })
})
