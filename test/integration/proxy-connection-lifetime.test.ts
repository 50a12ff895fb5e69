import { connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { connections } from '../helpers/raw-http.js'
import { pipelineWrites, request } from '../helpers/request-streams.js'
import { type TestCa, testCa } from '../helpers/tls-certs.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'
import { startWsUpstream, type WsUpstream } from '../helpers/ws-upstream.js'

/** Every timeout the proxy has for a client, short: timeouts.clientIdleMs, requestBodyMs, upstreamMs, websocket.idleTimeoutMs and handoffTimeoutMs. */
const T = 200
/**
 * README "Limits and timeouts": once a client falls silent, whatever it sent,
 * the longest it can hold a connection is a request waiting on its upstream
 * (upstreamMs), its body (requestBodyMs) and then an idle keep-alive
 * (clientIdleMs), or a head checked every half second; a WebSocket its
 * idle timeout and the wait for the client's close frame (handoffTimeoutMs);
 * plus a second for a busy machine.
 */
const BOUND_MS = 3 * T + 500 + 1000

const CONNECT = 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'
/** A WebSocket handshake, to the WebSocket upstream or to one that answers it as a plain request. */
const upgrade = (version: string) =>
  `GET /p0 HTTP/1.1\r\nHost: a\r\nX-Version: ${version}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`

/**
 * An offer of an upgrade to something other than WebSocket (h2c, as curl
 * --http2 sends it), which the proxy declines: served as a plain request and
 * the connection ended, or with a body, answered 400.
 */
const declined = (body: string) =>
  `GET /p0 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n` +
  (body === '' ? '\r\n' : `Content-Length: ${body.length}\r\n\r\n${body}`)

/** What one client does: pipelined requests (perhaps a CONNECT, a WebSocket handshake or a declined upgrade among them), cut into writes; then it half-closes or falls silent. */
const client = fc.record({
  requests: fc.array(
    fc.oneof(
      { arbitrary: request, weight: 8 },
      fc.constant(CONNECT),
      fc.constant(upgrade('blue')),
      fc.constant(upgrade('ws')),
      fc.constant(declined('')),
      fc.constant(declined('hello')),
    ),
    { minLength: 1, maxLength: 3 },
  ),
  cuts: fc.array(fc.nat(), { maxLength: 4 }),
  then: fc.constantFrom('half-closes', 'stays silent'),
})

/** Plays one client and returns its socket once everything is written. `ca`: over TLS, trusting it. */
async function play(proxy: TestProxy, c: { requests: string[]; cuts: number[]; then: string }, ca?: string): Promise<Socket> {
  // allowHalfOpen: the client never closes its side because the proxy closed its own.
  const at = { port: proxy.port, host: '127.0.0.1', allowHalfOpen: true }
  const socket: Socket =
    ca === undefined ? connect(at) : tlsConnect({ ...at, ca, servername: 'proxy.test', ALPNProtocols: ['http/1.1'] })
  socket.setNoDelay(true)
  socket.on('error', () => {})
  socket.resume()
  await new Promise<void>((r) => socket.once(ca === undefined ? 'connect' : 'secureConnect', r))
  for (const w of pipelineWrites(c.requests, c.cuts)) {
    if (socket.destroyed) break
    socket.write(w)
    // Each write its own TCP segment.
    await new Promise((r) => setImmediate(r))
  }
  if (c.then === 'half-closes' && !socket.destroyed) socket.end()
  return socket
}

const LISTENERS = [
  { name: 'cleartext', tls: false, http2: false, runs: 25 },
  { name: 'TLS (node:https)', tls: true, http2: false, runs: 10 },
  { name: 'TLS with http2 on, HTTP/1.1 by ALPN', tls: true, http2: true, runs: 10 },
] as const

describe.each(LISTENERS)('connection lifetime ($name): no client holds a connection past the timeouts, whatever it sends', (listener) => {
  let app: TestUpstream
  let ws: WsUpstream
  let ca: TestCa | undefined
  let proxy: TestProxy

  beforeAll(async () => {
    app = await startUpstream('blue')
    ws = await startWsUpstream('blue-ws')
    let tls: Record<string, unknown> = {}
    if (listener.tls) {
      ca = await testCa()
      const leaf = await ca.issue(['proxy.test'])
      tls = { tls: { cert: leaf.cert, key: leaf.key } }
    }
    proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, http2: listener.http2, ...tls },
      versions: { blue: { instances: [{ url: app.url }] }, ws: { instances: [{ url: ws.url }] } },
      weights: { blue: 100 },
      overrides: [{ match: { header: 'x-version', value: 'ws' }, version: 'ws' }],
      outlier: { consecutiveFailures: 0 },
      timeouts: { clientIdleMs: T, requestBodyMs: T, upstreamMs: T },
      websocket: { idleTimeoutMs: T, handoffTimeoutMs: T },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await app.close()
    await ws.close()
    await ca?.close()
  })

  it('for generated pipelines (bad framing, CONNECT, WebSocket handshakes, declined upgrades), half-closed or silent: the proxy closes every one in time', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(client, { minLength: 1, maxLength: 4 }), async (clients) => {
        const started = performance.now()
        const sockets = await Promise.all(clients.map((c) => play(proxy, c, ca?.rootPem)))
        try {
          // Ended by the proxy is not enough: its side must be gone too (no half-closed connection left).
          await expect
            .poll(() => connections(proxy), { message: 'every client connection closed', timeout: BOUND_MS, interval: 10 })
            .toBe(0)
          expect(performance.now() - started).toBeLessThan(BOUND_MS + 4 * T)
        } finally {
          for (const socket of sockets) socket.destroy()
        }
      }),
      { numRuns: listener.runs, endOnFailure: true },
    )
  })
})
