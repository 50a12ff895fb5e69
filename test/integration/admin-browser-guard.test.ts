import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BlueGreen, blueGreen } from '../helpers/blue-green.js'
import { admin, startProxy, TEST_TOKEN, type TestProxy } from '../helpers/proxy.js'
import { rawExchange } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/**
 * A token-less admin API (allowed on loopback only) against what a browser
 * page elsewhere can send: a foreign Host (DNS rebinding), a foreign Origin,
 * and "simple" cross-site POSTs with text/plain. README "Admin API".
 */

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: any
}

/** An admin request with exactly these headers (node:http lets a test set Host, which fetch does not). */
function send(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, setHost: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => {
        let parsed: unknown = text
        try {
          parsed = JSON.parse(text)
        } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('a token-less loopback admin refuses what a page elsewhere sends', () => {
  let f: BlueGreen
  let p: TestProxy
  let port: number
  let own: string

  beforeAll(async () => {
    f = await blueGreen({ admin: { host: '127.0.0.1', port: 0 }, weights: { blue: 90, green: 10 } })
    p = f.proxy
    port = p.adminPort
    own = `127.0.0.1:${port}`
  })
  afterAll(() => f?.close())

  const weights = async () => (await admin(p, 'GET', '/v1/state', undefined, null)).body.weights

  it('answers its own names: loopback addresses, localhost, the configured host, any port', async () => {
    for (const host of [own, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, '127.0.0.2', '127.1.2.3:80']) {
      const r = await send(port, 'GET', '/v1/state', { host })
      expect(r.status, host).toBe(200)
    }
  })

  it('refuses a foreign Host with 403 SLUICE_FORBIDDEN_HOST (DNS rebinding)', async () => {
    for (const host of [`evil.example:${port}`, 'evil.example', `127.evil.example:${port}`, `localhost.evil.example:${port}`, `10.0.0.1:${port}`]) {
      const r = await send(port, 'GET', '/v1/state', { host })
      expect(r.status, host).toBe(403)
      expect(r.body.error.code, host).toBe('SLUICE_FORBIDDEN_HOST')
    }
    const put = await send(port, 'PUT', '/v1/weights', { host: `evil.example:${port}`, 'content-type': 'application/json' }, '{"blue":0,"green":100}')
    expect(put.status).toBe(403)
    expect(await weights()).toEqual({ blue: 90, green: 10 })
  })

  it('refuses a request without Host (HTTP/1.0) with 403', async () => {
    const r = await rawExchange(port, ['GET /v1/state HTTP/1.0\r\n\r\n'])
    expect(r.status).toBe(403)
    expect(JSON.parse(r.body).error.code).toBe('SLUICE_FORBIDDEN_HOST')
  })

  it("accepts its own origins and refuses any other Origin with 403 SLUICE_FORBIDDEN_ORIGIN", async () => {
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, `http://[::1]:${port}`, `HTTP://LOCALHOST:${port}`]) {
      const r = await send(port, 'GET', '/v1/state', { host: own, origin })
      expect(r.status, origin).toBe(200)
    }
    for (const origin of [
      'http://evil.example',
      `http://evil.example:${port}`,
      `http://127.0.0.1:${port + 1}`,
      `http://127.0.0.2:${port}`,
      `https://127.0.0.1:${port}`,
      'null',
    ]) {
      const r = await send(port, 'GET', '/v1/state', { host: own, origin })
      expect(r.status, origin).toBe(403)
      expect(r.body.error.code, origin).toBe('SLUICE_FORBIDDEN_ORIGIN')
    }
  })

  it('refuses a POST or PUT that is not application/json with 415, with or without a body, and changes nothing', async () => {
    const started = await admin(p, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps: [{ weight: 20, holdMs: 600_000 }, { weight: 100 }] }, null)
    expect(started.status).toBe(201)
    const cases: [string, string, Record<string, string>, string | undefined][] = [
      ['POST', '/v1/rollout/promote', { 'content-type': 'text/plain' }, undefined],
      ['POST', '/v1/rollout/promote', {}, undefined],
      ['POST', '/v1/rollout/promote', { 'content-type': 'text/plain', origin: 'http://evil.example' }, ''],
      ['POST', '/v1/reload', { 'content-type': 'application/x-www-form-urlencoded' }, 'a=b'],
      ['PUT', '/v1/weights', { 'content-type': 'text/plain' }, '{"blue":0,"green":100}'],
      ['POST', '/v1/drain', { 'content-type': 'multipart/form-data; boundary=x' }, '--x--'],
    ]
    for (const [method, path, headers, body] of cases) {
      const r = await send(port, method, path, { host: own, ...headers }, body)
      const want = headers.origin === undefined ? [415, 'SLUICE_UNSUPPORTED_MEDIA_TYPE'] : [403, 'SLUICE_FORBIDDEN_ORIGIN']
      expect([r.status, r.body.error.code], `${method} ${path} ${JSON.stringify(headers)}`).toEqual(want)
    }
    const state = (await admin(p, 'GET', '/v1/state', undefined, null)).body
    expect(state.weights).toEqual({ blue: 80, green: 20 })
    expect(state.rollout.status).toBe('progressing')
    // The admin's own callers: a body-less JSON POST, as `sluice ctl` sends it.
    const promoted = await send(port, 'POST', '/v1/rollout/promote', { host: own, 'content-type': 'application/json' })
    expect(promoted.status).toBe(200)
    expect(await weights()).toEqual({ blue: 0, green: 100 })
  })

  it('leaves /healthz, /readyz, /metrics and the status page alone, and keeps proxying', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/']) {
      expect((await send(port, 'GET', path, { host: 'evil.example', origin: 'http://evil.example' })).status, path).toBe(200)
    }
    expect((await fetch(p.url)).status).toBe(200)
  })
})

describe('an admin with a token checks the token, not Host or Origin', () => {
  let blue: TestUpstream
  let p: TestProxy

  beforeAll(async () => {
    blue = await startUpstream('blue')
    p = await startProxy({ versions: { blue: { instances: [{ url: blue.url }] } } })
  })
  afterAll(async () => {
    await p.stop()
    await blue.close()
  })

  it('a foreign Origin or Host with the right token is served; without it, 401', async () => {
    const foreign = { host: 'evil.example', origin: 'http://evil.example' }
    const ok = await send(p.adminPort, 'GET', '/v1/state', { ...foreign, authorization: `Bearer ${TEST_TOKEN}` })
    expect(ok.status).toBe(200)
    const none = await send(p.adminPort, 'POST', '/v1/reload', { ...foreign, 'content-type': 'text/plain' })
    expect(none.status).toBe(401)
    // A body-less POST needs no content type when the token is there: it reaches the route (409: no rollout).
    const pause = await send(p.adminPort, 'POST', '/v1/rollout/pause', { host: 'localhost', authorization: `Bearer ${TEST_TOKEN}` })
    expect([pause.status, pause.body.error.code]).toEqual([409, 'SLUICE_ROLLOUT_CONFLICT'])
  })

  it('grants no CORS preflight, so a page elsewhere can never send the token', async () => {
    const pre = await send(p.adminPort, 'OPTIONS', '/v1/state', {
      host: `127.0.0.1:${p.adminPort}`,
      origin: 'http://evil.example',
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'authorization',
    })
    expect(pre.status).toBe(405)
    expect(pre.headers['access-control-allow-origin']).toBeUndefined()
    expect(pre.headers['access-control-allow-headers']).toBeUndefined()
  })
})
