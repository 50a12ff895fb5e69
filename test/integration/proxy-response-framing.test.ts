import { Agent, request as httpRequest } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { closeServer, connections, inflight, listenLoopback } from '../helpers/raw-http.js'
import { chunkedPayload, framing } from '../helpers/request-streams.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/** A response an upstream that lies about its framing might send; `then`: what it does with the connection afterwards. */
const SMUGGLED = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED'

const answer = fc
  .record({
    status: fc.constantFrom(
      'HTTP/1.1 200 OK',
      'HTTP/1.1 200 OK',
      'HTTP/1.1 200 OK',
      'HTTP/1.0 200 OK',
      'HTTP/1.1 200',
      'HTTP/1.1 204 No Content',
      'HTTP/1.1 304 Not Modified',
      'HTTP/1.1 404 Not Found',
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK',
      'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK',
      'HTTP/1.1 2000 What',
    ),
    // Well-formed framing most of the time, so that answers also pass through and connections get reused.
    cl: fc.oneof(
      { arbitrary: fc.constantFrom(undefined, 'exact', 'exact'), weight: 6 },
      fc.constantFrom('short', 'long', 'dup-same', 'dup-diff', 'N, N', 'many'),
    ),
    te: fc.oneof(
      { arbitrary: fc.constantFrom(undefined, undefined, 'chunked'), weight: 6 },
      fc.constantFrom('Chunked', 'gzip, chunked', 'identity', 'name-space'),
    ),
    body: fc.array(fc.oneof(fc.string({ maxLength: 16 }), fc.constant(SMUGGLED)), { maxLength: 3 }),
    badChunk: fc.constantFrom(false, false, false, false, false, true),
    trailers: fc.boolean(),
    eol: fc.constantFrom('\r\n', '\r\n', '\r\n', '\r\n', '\r\n', '\r\n', '\n'),
    then: fc.constantFrom('keep', 'keep', 'close', 'reset'),
  })
  .map((a) => {
    const body = a.body.join('')
    const { fields, chunked } = framing(a.cl, a.te, Buffer.byteLength(body))
    const payload = chunked ? chunkedPayload(a.body, { bad: a.badChunk, trailer: a.trailers ? 'X-Trailer: t' : undefined }) : body
    return { bytes: `${[a.status, 'X-Hostile: 1', ...fields].join(a.eol)}${a.eol}${a.eol}${payload}`, then: a.then }
  })

/**
 * A TCP upstream that answers each request it reads (heads only: the test
 * sends no bodies) with the next scripted answer, then keeps, closes or
 * resets the connection as that answer says.
 */
class ScriptedUpstream {
  readonly server: Server
  readonly sockets = new Set<Socket>()
  script: { bytes: string; then: string }[] = []
  requests = 0

  constructor() {
    this.server = createServer((socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
      socket.on('error', () => {})
      let buf = ''
      socket.on('data', (d) => {
        buf += d.toString('latin1')
        for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
          buf = buf.slice(end + 4)
          this.requests++
          const next = this.script.shift()
          if (next === undefined) {
            socket.destroy()
            return
          }
          // Which request this answer is for: a client that gets an answer must get its own.
          socket.write(next.bytes.replace('X-Hostile: 1', `X-Hostile: 1\r\nX-Answer: ${this.requests}`))
          if (next.then === 'close') socket.end()
          if (next.then === 'reset') socket.resetAndDestroy()
          if (next.then !== 'keep') return
        }
      })
    })
  }

  listen(): Promise<string> {
    return listenLoopback(this.server)
  }

  close(): Promise<void> {
    return closeServer(this.server, this.sockets)
  }
}

interface Got {
  status?: number
  answer?: string | string[] | undefined
  body?: string
  error?: string
}

/** One GET through the proxy with Node's strict HTTP client on `agent` (keep-alive): what came back, or the error. */
function get(proxy: TestProxy, agent: Agent, version: string): Promise<Got> {
  return new Promise((resolve) => {
    const got: Got = {}
    const req = httpRequest(`${proxy.url}/r`, { agent, headers: { 'x-version': version } }, (res) => {
      got.status = res.statusCode
      got.answer = res.headers['x-answer']
      let body = ''
      res.setEncoding('latin1')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ ...got, body }))
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ ...got, error: err.code ?? err.message }))
      res.on('aborted', () => resolve({ ...got, error: 'aborted' }))
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ ...got, error: err.code ?? err.message }))
    req.end()
  })
}

/**
 * README "Proxying rules": whatever framing an upstream answers with, the
 * client gets one well-formed response per request (the upstream's, or the
 * proxy's own 502), or, once the upstream's head has been passed on, a cut
 * one; never bytes a strict HTTP parser rejects, and never a second
 * response hidden in a body (response splitting). The next request on the
 * same client connection gets its own answer.
 */
describe('response framing: whatever an upstream sends, the client parses one answer per request', () => {
  const hostile = new ScriptedUpstream()
  let live: TestUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    const url = await hostile.listen()
    live = await startUpstream('live')
    proxy = await startProxy({
      versions: { live: { instances: [{ url: live.url }] }, hostile: { instances: [{ url }] } },
      weights: { live: 100 },
      overrides: [{ match: { header: 'x-version', value: 'hostile' }, version: 'hostile' }],
      outlier: { consecutiveFailures: 0 },
      retries: { attempts: 0 },
      timeouts: { upstreamMs: 300, bodyIdleMs: 300 },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await hostile.close()
    await live.close()
  })

  const outcomes: string[] = []
  afterAll(() => {
    const counts: Record<string, number> = {}
    for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1
    console.log('hostile answers as the client got them:', JSON.stringify(counts))
  })

  it('for generated status lines, Content-Length and Transfer-Encoding combinations, chunks, trailers and smuggled responses', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(answer, { minLength: 1, maxLength: 3 }), async (answers) => {
        hostile.script = answers.map((a) => ({ ...a }))
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        try {
          for (const _ of answers) {
            const r = await get(proxy, agent, 'hostile')
            // A parse error here would mean the proxy sent bytes no strict client can frame.
            expect(r.error ?? '').not.toMatch(/^HPE_/)
            if (r.error !== undefined) expect(['ECONNRESET', 'aborted', 'socket hang up']).toContain(r.error)
            // An answer that reached the client is the proxy's own, or the upstream's to this very request.
            if (r.status !== undefined && r.answer === undefined) expect(r.body ?? '').toMatch(/^\{"error":\{"code":"SLUICE_|^$/)
            else if (r.status !== undefined) expect(r.answer).toBe(String(hostile.requests))
            outcomes.push(r.error ?? `${r.status}${r.answer === undefined ? ' own' : ''}`)
            // The same client connection (or a new one, if the last was cut) answers the next request cleanly.
            const next = await get(proxy, agent, 'live')
            expect(next).toMatchObject({ status: 200 })
            expect(JSON.parse(next.body!)).toMatchObject({ name: 'live' })
          }
        } finally {
          agent.destroy()
        }
        await expect.poll(() => inflight(proxy), { message: 'nothing in flight' }).toBe(0)
        await expect.poll(() => connections(proxy), { message: 'no client connection left' }).toBe(0)
      }),
      { numRuns: 60, endOnFailure: true },
    )
  })
})
