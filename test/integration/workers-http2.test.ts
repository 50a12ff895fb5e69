import { connect, type ClientHttp2Session } from 'node:http2'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { admin } from '../helpers/proxy.js'
import { handshake, testCa, type TestCa } from '../helpers/tls-certs.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { startWorkers, type WorkersProxy } from '../helpers/workers.js'

/**
 * TLS and HTTP/2 with workers (README "Workers and self-upgrade", "TLS and
 * HTTP/2"): a retiring worker tells its HTTP/2 clients with GOAWAY and a new
 * session is served by the new workers; a reload's certificates are in every
 * worker before the admin answer.
 */

function get(session: ClientHttp2Session): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': '/', ':method': 'GET' })
    let status = 0
    let body = ''
    stream.on('response', (h) => (status = Number(h[':status'])))
    stream.setEncoding('utf8')
    stream.on('data', (c: string) => (body += c))
    stream.on('end', () => resolve({ status, body }))
    stream.on('error', reject)
  })
}

describe('HTTP/2 sessions across a self-upgrade', () => {
  let blue: TestUpstream
  let p: WorkersProxy

  beforeAll(async () => {
    blue = await startUpstream('blue')
    p = await startWorkers({
      listen: { host: '127.0.0.1', port: 0, http2: true },
      workers: 2,
      versions: { blue: { instances: [{ url: blue.url }] } },
      weights: { blue: 100 },
      health: { intervalMs: 250, timeoutMs: 200 },
      drain: { timeoutMs: 5_000 },
    })
  }, 180_000)
  afterAll(async () => {
    await p?.close()
    await blue?.close()
  })

  it('SIGUSR2: an open h2c session gets GOAWAY from its retiring worker and a new session is served', async () => {
    const session = connect(p.url)
    session.on('error', () => {})
    let goaway = false
    session.on('goaway', () => (goaway = true))
    try {
      expect((await get(session)).status).toBe(200)
      process.kill(p.serve.pid, 'SIGUSR2')
      await vi.waitFor(() => expect(goaway).toBe(true), { timeout: 30_000, interval: 50 })
    } finally {
      session.destroy()
    }
    const fresh = connect(p.url)
    fresh.on('error', () => {})
    try {
      const answer = await get(fresh)
      expect(answer.status).toBe(200)
      expect(answer.body).toContain('blue')
    } finally {
      fresh.destroy()
    }
  }, 60_000)
})

describe('certificates with workers', () => {
  let blue: TestUpstream
  let ca: TestCa
  let p: WorkersProxy | undefined

  beforeAll(async () => {
    blue = await startUpstream('blue')
    ca = await testCa()
  })
  afterAll(async () => {
    await p?.close()
    await blue?.close()
    await ca?.close()
  })

  it('POST /v1/reload: a new SNI certificate is what every worker presents once the answer is back', async () => {
    const def = await ca.issue(['proxy.test'])
    const api = await ca.issue(['api.example.com'])
    const raw = (tls: Record<string, unknown>) => ({
      listen: { host: '127.0.0.1', port: 0, http2: true, tls },
      workers: 2,
      versions: { blue: { instances: [{ url: blue.url }] } },
      weights: { blue: 100 },
    })
    p = await startWorkers(raw({ cert: def.cert, key: def.key }))
    const port = Number(new URL(p.url).port)
    expect((await handshake(port, 'api.example.com', ca.rootPem)).fingerprint).toBe(def.fingerprint)
    p.rewrite(raw({ cert: def.cert, key: def.key, sni: [{ names: ['api.example.com'], cert: api.cert, key: api.key }] }))
    expect((await admin(p, 'POST', '/v1/reload')).status).toBe(200)
    // New connections go to the workers in turn: six handshakes reach both.
    for (let n = 0; n < 6; n++) expect((await handshake(port, 'api.example.com', ca.rootPem)).fingerprint).toBe(api.fingerprint)
    expect((await handshake(port, 'proxy.test', ca.rootPem)).fingerprint).toBe(def.fingerprint)
  }, 60_000)
})
