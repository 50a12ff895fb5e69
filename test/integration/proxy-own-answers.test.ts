import type { ServerResponse } from 'node:http'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { refusedUrl } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

describe("the proxy's own answers", () => {
  let refused: string
  let hang: TestUpstream
  let live: TestUpstream
  const hung: ServerResponse[] = []
  let proxy: TestProxy

  beforeAll(async () => {
    refused = await refusedUrl()
    hang = await startUpstream('hang', (req, res) => {
      req.resume()
      hung.push(res)
    })
    live = await startUpstream('live')
    proxy = await startProxy({
      versions: {
        refusing: { instances: [{ url: refused }] },
        hanging: { instances: [{ url: hang.url }] },
        live: { instances: [{ url: live.url }] },
      },
      weights: { live: 100 },
      overrides: [
        { match: { header: 'x-version', value: 'refusing' }, version: 'refusing' },
        { match: { header: 'x-version', value: 'hanging' }, version: 'hanging' },
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

  it('502 SLUICE_UPSTREAM_FAILED when the upstream fails (connection refused)', async () => {
    const port = new URL(refused).port
    expect(await get({ 'x-version': 'refusing' })).toEqual({
      status: 502,
      type: 'application/json',
      cache: 'no-store',
      body: {
        error: {
          code: 'SLUICE_UPSTREAM_FAILED',
          message: `upstream failed: ECONNREFUSED connect ECONNREFUSED 127.0.0.1:${port}`,
        },
      },
    })
  })

  it('504 SLUICE_UPSTREAM_TIMEOUT when the headers do not come within timeouts.upstreamMs', async () => {
    expect(await get({ 'x-version': 'hanging' })).toEqual({
      status: 504,
      type: 'application/json',
      cache: 'no-store',
      body: {
        error: {
          code: 'SLUICE_UPSTREAM_TIMEOUT',
          message: 'upstream timed out: UND_ERR_HEADERS_TIMEOUT Headers Timeout Error',
        },
      },
    })
  })

  it('503 SLUICE_NO_USABLE_INSTANCE when no version has a usable instance', async () => {
    for (const version of ['refusing', 'hanging', 'live'])
      expect((await admin(proxy, 'POST', '/v1/drain', { version })).status).toBe(200)
    try {
      expect(await get()).toEqual({
        status: 503,
        type: 'application/json',
        cache: 'no-store',
        body: { error: { code: 'SLUICE_NO_USABLE_INSTANCE', message: 'no usable instance in any version' } },
      })
    } finally {
      for (const version of ['refusing', 'hanging', 'live']) await admin(proxy, 'POST', '/v1/undrain', { version })
    }
    expect((await get()).status).toBe(200)
  })
})
