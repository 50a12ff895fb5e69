import { request } from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildConfig } from '../../src/config/load.js'
import { ConfigError } from '../../src/errors.js'
import { type Running, runSluice } from '../../src/lifecycle/run.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** README "Request IDs", end to end: a real proxy in front of a real upstream that reports what it got. */

const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

interface Seen {
  /** Every header line the upstream received, as [name, value] with the name lower-cased. */
  lines: [string, string][]
}

interface Got {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** One request with exact header lines (repeated names stay separate lines). */
function send(port: number, lines: [string, string | string[]][], path = '/'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false })
    for (const [name, value] of lines) req.setHeader(name, value)
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

function valuesOf(seen: Seen, name: string): string[] {
  return seen.lines.filter(([n]) => n === name).map(([, v]) => v)
}

describe('request IDs', () => {
  let upstream: TestUpstream
  let echoing: TestUpstream
  let proxy: Running
  let custom: Running
  let broken: Running
  const seen: Seen[] = []

  beforeAll(async () => {
    const record = (req: import('node:http').IncomingMessage) => {
      const lines: [string, string][] = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!])
      seen.push({ lines })
    }
    upstream = await startUpstream('blue', (req, res) => {
      record(req)
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok')
    })
    // An application that sets its own ID on the response: the client must still see the proxy's, once.
    echoing = await startUpstream('green', (req, res) => {
      req.resume()
      res.writeHead(200, { 'x-request-id': 'app-made-this-up', 'x-correlation-id': 'app-made-this-up' })
      res.end('ok')
    })
    const log = pino({ level: 'silent' })
    const config = (versions: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      buildConfig(
        {
          listen: { host: '127.0.0.1', port: 0 },
          admin: { host: '127.0.0.1', port: 0, token: 't' },
          versions,
          retries: { attempts: 0 },
          ...extra,
        },
        undefined,
      )
    proxy = await runSluice(config({ blue: { instances: [{ url: upstream.url }] } }), { log })
    custom = await runSluice(
      config({ green: { instances: [{ url: echoing.url }] } }, { requestId: { header: 'X-Correlation-Id' } }),
      { log },
    )
    // Nothing listens on port 9 of loopback (discard): every request gets the proxy's own 502.
    broken = await runSluice(config({ blue: { instances: [{ url: 'http://127.0.0.1:9' }] } }), { log })
  })

  afterAll(async () => {
    await Promise.all([proxy?.stop(), custom?.stop(), broken?.stop()])
    await Promise.all([upstream?.close(), echoing?.close()])
  })

  it('gives a request without one a new ID, sent upstream once and echoed to the client', async () => {
    seen.length = 0
    const a = await send(proxy.port, [])
    const b = await send(proxy.port, [])
    expect(a.status).toBe(200)
    const idA = a.headers['x-request-id'] as string
    const idB = b.headers['x-request-id'] as string
    expect(idA).toMatch(UUID_V8)
    expect(idB).toMatch(UUID_V8)
    expect(idA).not.toBe(idB)
    expect(valuesOf(seen[0]!, 'x-request-id')).toEqual([idA])
    expect(valuesOf(seen[1]!, 'x-request-id')).toEqual([idB])
  })

  it("keeps the client's own ID when it is sane", async () => {
    seen.length = 0
    const got = await send(proxy.port, [['X-Request-Id', 'checkout-7f3a:retry=2']])
    expect(got.headers['x-request-id']).toBe('checkout-7f3a:retry=2')
    expect(valuesOf(seen[0]!, 'x-request-id')).toEqual(['checkout-7f3a:retry=2'])
  })

  it('replaces an ID with spaces, one too long, and a repeated header, with one new ID', async () => {
    for (const value of ['has a space', 'x'.repeat(201), ['one', 'two']]) {
      seen.length = 0
      const got = await send(proxy.port, [['x-request-id', value]])
      const id = got.headers['x-request-id'] as string
      expect(id).toMatch(UUID_V8)
      expect(valuesOf(seen[0]!, 'x-request-id')).toEqual([id])
    }
  })

  it('passes traceparent and tracestate unchanged', async () => {
    seen.length = 0
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    const tracestate = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'
    await send(proxy.port, [
      ['traceparent', traceparent],
      ['tracestate', tracestate],
    ])
    expect(valuesOf(seen[0]!, 'traceparent')).toEqual([traceparent])
    expect(valuesOf(seen[0]!, 'tracestate')).toEqual([tracestate])
  })

  it("uses requestId.header's name, and replaces an application's own ID on the response", async () => {
    const got = await send(custom.port, [
      ['x-correlation-id', 'corr-1'],
      ['x-request-id', 'just-a-header'],
    ])
    expect(got.status).toBe(200)
    // Once, and the proxy's: a repeated header would read "corr-1, app-made-this-up".
    expect(got.headers['x-correlation-id']).toBe('corr-1')
    // Not the configured name: an ordinary end-to-end header, passed back as the application sent it.
    expect(got.headers['x-request-id']).toBe('app-made-this-up')
  })

  it("puts the ID in the proxy's own error body and header", async () => {
    const mine = await send(broken.port, [['x-request-id', 'trace-me-502']])
    expect(mine.status).toBe(502)
    expect(mine.headers['x-request-id']).toBe('trace-me-502')
    expect(JSON.parse(mine.body)).toEqual({
      error: { code: 'SLUICE_UPSTREAM_FAILED', message: expect.any(String), requestId: 'trace-me-502' },
    })
    const fresh = await send(broken.port, [])
    const id = fresh.headers['x-request-id'] as string
    expect(id).toMatch(UUID_V8)
    expect(JSON.parse(fresh.body).error.requestId).toBe(id)
    // Answered without any instance (a request-target the proxy cannot forward): the ID is there too.
    const raw = await send(proxy.port, [['x-request-id', 'bad-target']], 'http://[bad')
    expect(raw.status).toBe(400)
    expect(JSON.parse(raw.body).error.requestId).toBe('bad-target')
  })

  it('refuses a requestId.header the proxy manages itself, or that is no header name', () => {
    for (const header of ['Host', 'x-forwarded-for', 'connection', 'x request id']) {
      let caught: unknown
      try {
        buildConfig({ versions: { blue: { instances: [{ url: upstream.url }] } }, requestId: { header } }, undefined)
      } catch (err) {
        caught = err
      }
      expect(caught).toBeInstanceOf(ConfigError)
      expect((caught as ConfigError).problems.map((p) => p.path)).toEqual(['requestId.header'])
    }
  })
})
