import { constants, type ClientHttp2Session } from 'node:http2'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { EventEmitter } from 'node:events'
import { pino } from 'pino'
import { drainDelay } from '../../src/lifecycle/drain-delay.js'
import { h2Request, h2Session } from '../helpers/h2-client.js'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { inflight } from '../helpers/raw-http.js'
import { testCa, type IssuedCertificate, type TestCa } from '../helpers/tls-certs.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** Requests to /hold wait until released; `aborted` counts those whose client (the proxy) went away first. */
function holdingUpstream() {
  const held: ServerResponse[] = []
  let aborted = 0
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    if (req.url === '/hold') {
      held.push(res)
      res.on('close', () => {
        if (!res.writableFinished) aborted++
      })
      return
    }
    res.end('ok')
  }
  return {
    handler,
    held,
    get aborted() {
      return aborted
    },
    release() {
      for (const res of held.splice(0)) res.end('released')
    },
  }
}

describe('HTTP/2 streams: cancel, GOAWAY, limits, rapid reset (README "TLS and HTTP/2")', () => {
  let ca: TestCa
  let leaf: IssuedCertificate
  let app: TestUpstream
  let hold: ReturnType<typeof holdingUpstream>
  let proxy: TestProxy | undefined
  const sessions: ClientHttp2Session[] = []

  const start = async (listen: Record<string, unknown> = {}) => {
    proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true, tls: { cert: leaf.cert, key: leaf.key }, ...listen },
      versions: { blue: { instances: [{ url: app.url }] } },
    })
    return proxy
  }
  const open = async (p: TestProxy) => {
    const s = await h2Session(`https://127.0.0.1:${p.port}`, { ca: ca.rootPem, servername: 'proxy.test' })
    sessions.push(s)
    return s
  }

  beforeAll(async () => {
    ca = await testCa()
    leaf = await ca.issue(['proxy.test'])
    hold = holdingUpstream()
    app = await startUpstream('blue', hold.handler)
  })
  afterEach(async () => {
    hold.release()
    for (const s of sessions.splice(0)) s.destroy()
    await proxy?.stop()
    proxy = undefined
  })
  afterAll(async () => {
    await app?.close()
    await ca?.close()
  })

  it("a client's RST_STREAM cancels the upstream request", async () => {
    const p = await start()
    const session = await open(p)
    const stream = session.request({ ':path': '/hold' })
    stream.on('error', () => {})
    await expect.poll(() => hold.held.length).toBe(1)
    const before = hold.aborted
    stream.close(constants.NGHTTP2_CANCEL)
    await expect.poll(() => hold.aborted).toBe(before + 1)
    await expect.poll(() => inflight(p)).toBe(0)
    // The session itself goes on.
    expect((await h2Request(session, '/after')).body).toBe('ok')
  })

  it('a graceful stop sends GOAWAY; the stream in flight finishes, then the session closes', async () => {
    const p = await start()
    const session = await open(p)
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)))
    const inFlight = h2Request(session, '/hold')
    await expect.poll(() => hold.held.length).toBe(1)
    const stopped = p.stop()
    expect(await goaway).toBe(constants.NGHTTP2_NO_ERROR)
    hold.release()
    const r = await inFlight
    expect(r.status).toBe(200)
    expect(r.body).toBe('released')
    await stopped
    await expect.poll(() => session.closed || session.destroyed).toBe(true)
    proxy = undefined
  })

  it('a session idle for timeouts.clientIdleMs gets a GOAWAY', async () => {
    proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true, tls: { cert: leaf.cert, key: leaf.key } },
      versions: { blue: { instances: [{ url: app.url }] } },
      timeouts: { clientIdleMs: 400 },
    })
    const session = await open(proxy)
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)))
    expect((await h2Request(session, '/once')).body).toBe('ok')
    expect(await goaway).toBe(constants.NGHTTP2_NO_ERROR)
    await expect.poll(() => session.closed || session.destroyed).toBe(true)
  })

  it('during drain.delayMs a stream gets its answer and its session a GOAWAY (HTTP/2 has no Connection: close)', async () => {
    const p = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: true, tls: { cert: leaf.cert, key: leaf.key } },
      versions: { blue: { instances: [{ url: app.url }] } },
      drain: { delayMs: 60_000 },
    })
    proxy = p
    const session = await open(p)
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)))
    const signals = new EventEmitter()
    const over = drainDelay(p.sluice, pino({ level: 'silent' }), signals)
    expect((await h2Request(session, '/during-delay')).body).toBe('ok')
    expect(await goaway).toBe(constants.NGHTTP2_NO_ERROR)
    // A new connection during the delay is still served.
    expect((await h2Request(await open(p), '/new')).body).toBe('ok')
    signals.emit('SIGTERM', 'SIGTERM')
    await over
  })

  it('announces listen.maxConcurrentStreams and serves streams beyond it as earlier ones end', async () => {
    const p = await start({ maxConcurrentStreams: 4 })
    const session = await open(p)
    await expect.poll(() => session.remoteSettings.maxConcurrentStreams).toBe(4)
    const answers = Promise.all(Array.from({ length: 6 }, () => h2Request(session, '/hold')))
    await expect.poll(() => hold.held.length).toBe(4)
    hold.release()
    await expect.poll(() => hold.held.length).toBe(2)
    hold.release()
    expect((await answers).map((a) => a.body)).toEqual(Array(6).fill('released'))
  })

  it('a rapid-reset flood (CVE-2023-44487) does not take the proxy down: its session is cut, other clients are answered', async () => {
    const p = await start()
    const other = await open(p)
    const flooder = await open(p)
    // Node's mitigation (nghttp2's reset rate limit): the session is ended with a GOAWAY once the resets pass the limit.
    let cutCode: number | undefined
    const cut = new Promise<void>((resolve) => {
      flooder.once('goaway', (code) => {
        cutCode = code
        resolve()
      })
      flooder.once('close', () => resolve())
    })
    let sent = 0
    const flood = async () => {
      // Open and reset streams as fast as the client can, yielding to I/O between batches.
      while (cutCode === undefined && !flooder.destroyed && sent < 200_000) {
        for (let i = 0; i < 200; i++) {
          try {
            const s = flooder.request({ ':path': '/flood' })
            s.on('error', () => {})
            // Reset once its HEADERS are on the wire (closing earlier, the client would never send it):
            // open and reset, the attack's pattern, which also keeps it within the announced stream limit.
            s.once('ready', () => s.close(constants.NGHTTP2_CANCEL))
            sent++
          } catch {
            return
          }
        }
        await new Promise((r) => setImmediate(r))
      }
    }
    const flooding = flood()
    // Other clients keep being answered while it floods.
    for (let i = 0; i < 5; i++) expect((await h2Request(other, `/during/${i}`)).body).toBe('ok')
    await cut
    await flooding
    expect(cutCode).not.toBe(constants.NGHTTP2_NO_ERROR)
    expect(sent).toBeLessThan(200_000)
    expect((await h2Request(other, '/after')).body).toBe('ok')
    const fresh = await open(p)
    expect((await h2Request(fresh, '/fresh')).body).toBe('ok')
    await expect.poll(() => inflight(p)).toBe(0)
  })
})
