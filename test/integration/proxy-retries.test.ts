import type { ServerResponse } from 'node:http'
import { request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { inflight, keyFor, refusedUrl } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** Answers with its name and the request body it read. */
function echo(req: import('node:http').IncomingMessage, res: ServerResponse, u: TestUpstream): void {
  const chunks: Buffer[] = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': u.name })
    res.end(`${u.name} ${req.method} ${Buffer.concat(chunks).toString()}`)
  })
}

const UPSTREAM_MS = 400

describe('retries through the real proxy', () => {
  let refused: string
  let live1: TestUpstream
  let hang: TestUpstream
  let live2: TestUpstream
  let cut: TestUpstream
  let live3: TestUpstream
  let closing: TestUpstream
  let live4: TestUpstream
  const hung: ServerResponse[] = []
  let proxy: TestProxy

  beforeAll(async () => {
    refused = await refusedUrl()
    live1 = await startUpstream('live1', echo)
    // Reads the request, never answers.
    hang = await startUpstream('hang', (req, res) => {
      req.resume()
      hung.push(res)
    })
    live2 = await startUpstream('live2', echo)
    // Sends the status line, headers and part of the body, then resets the connection.
    cut = await startUpstream('cut', (req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000', 'x-upstream': 'cut' })
      res.write('x'.repeat(100), () => setTimeout(() => res.socket?.resetAndDestroy(), 20))
    })
    live3 = await startUpstream('live3', echo)
    // Reads the request and closes the connection without a response byte.
    closing = await startUpstream('closing', (req) => {
      req.resume()
      req.socket.destroy()
    })
    live4 = await startUpstream('live4', echo)
    proxy = await startProxy({
      versions: {
        refusing: { instances: [{ url: refused }, { url: live1.url }] },
        hanging: { instances: [{ url: hang.url }, { url: live2.url }] },
        cutting: { instances: [{ url: cut.url }, { url: live3.url }] },
        closing: { instances: [{ url: closing.url }, { url: live4.url }] },
      },
      weights: { refusing: 100 },
      overrides: [
        { match: { header: 'x-version', value: 'hanging' }, version: 'hanging' },
        { match: { header: 'x-version', value: 'cutting' }, version: 'cutting' },
        { match: { header: 'x-version', value: 'closing' }, version: 'closing' },
      ],
      sticky: { keys: ['header:x-user-id'] },
      // Keep the failing instances in rotation so every test reaches them.
      outlier: { consecutiveFailures: 0 },
      timeouts: { upstreamMs: UPSTREAM_MS },
      retries: { attempts: 1 },
    })
  })
  // Each test starts from nothing in flight: the hung upstream's requests end, and every count is back to 0.
  afterEach(async () => {
    for (const res of hung.splice(0)) res.destroy()
    await vi.waitFor(
      () => {
        if (inflight(proxy) !== 0) throw new Error(`${inflight(proxy)} requests still in flight`)
      },
      { timeout: 10_000, interval: 20 },
    )
  })
  afterAll(async () => {
    await proxy.stop()
    for (const u of [live1, hang, live2, cut, live3, closing, live4]) await u.close()
  })

  async function send(method: string, headers: Record<string, string>, body?: string) {
    const res = await request(`${proxy.url}/r`, { method: method as 'GET', headers, ...(body ? { body } : {}) })
    return { status: res.statusCode, upstream: res.headers['x-upstream'], text: await res.body.text() }
  }

  it('a GET to a refused instance is retried on another instance of the version', async () => {
    const before = live1.hits
    const r = await send('GET', { 'x-user-id': keyFor(proxy, refused) })
    expect(r).toEqual({ status: 200, upstream: 'live1', text: 'live1 GET ' })
    expect(live1.hits - before).toBe(1)
  })

  it('a POST with a body to a refused instance is retried and the body arrives whole', async () => {
    const body = 'order=42&'.repeat(2000)
    const r = await send('POST', { 'x-user-id': keyFor(proxy, refused), 'content-type': 'text/plain' }, body)
    expect(r).toEqual({ status: 200, upstream: 'live1', text: `live1 POST ${body}` })
  })

  it('a POST to an upstream that never answers is not retried: 504 after timeouts.upstreamMs', async () => {
    const extra = { 'x-version': 'hanging' }
    const before = { hang: hang.hits, live2: live2.hits }
    const r = await send('POST', { ...extra, 'x-user-id': keyFor(proxy, hang.url, extra) }, 'pay=1')
    expect(r.status).toBe(504)
    expect(JSON.parse(r.text).error.code).toBe('SLUICE_UPSTREAM_TIMEOUT')
    expect({ hang: hang.hits - before.hang, live2: live2.hits - before.live2 }).toEqual({ hang: 1, live2: 0 })
  })

  it('a GET that got no response byte is retried on another instance', async () => {
    const extra = { 'x-version': 'closing' }
    const before = { closing: closing.hits, live4: live4.hits }
    const r = await send('GET', { ...extra, 'x-user-id': keyFor(proxy, closing.url, extra) })
    expect(r).toEqual({ status: 200, upstream: 'live4', text: 'live4 GET ' })
    expect({ closing: closing.hits - before.closing, live4: live4.hits - before.live4 }).toEqual({
      closing: 1,
      live4: 1,
    })
  })

  it('a retry does not restart the wait: a GET to an upstream that never answers gets 504 after upstreamMs once', async () => {
    const extra = { 'x-version': 'hanging' }
    const before = { hang: hang.hits, live2: live2.hits }
    const started = performance.now()
    const r = await send('GET', { ...extra, 'x-user-id': keyFor(proxy, hang.url, extra) })
    const waited = performance.now() - started
    expect(r.status).toBe(504)
    expect(JSON.parse(r.text).error.code).toBe('SLUICE_UPSTREAM_TIMEOUT')
    // The try used the request's whole head deadline: nothing is left for a retry.
    expect({ hang: hang.hits - before.hang, live2: live2.hits - before.live2 }).toEqual({ hang: 1, live2: 0 })
    expect(waited / UPSTREAM_MS).toBeGreaterThanOrEqual(0.95)
    expect(waited / UPSTREAM_MS).toBeLessThan(1.5)
  })

  it('a GET whose response bytes reached the client is never retried: the client sees it cut', async () => {
    const extra = { 'x-version': 'cutting' }
    const before = { cut: cut.hits, live3: live3.hits }
    const res = await request(`${proxy.url}/r`, { headers: { ...extra, 'x-user-id': keyFor(proxy, cut.url, extra) } })
    expect(res.statusCode).toBe(200)
    expect(res.headers['x-upstream']).toBe('cut')
    await expect(res.body.text()).rejects.toThrow()
    expect({ cut: cut.hits - before.cut, live3: live3.hits - before.live3 }).toEqual({ cut: 1, live3: 0 })
  })
})
