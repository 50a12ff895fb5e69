import { connect, createServer, type Server, type Socket } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { closeServer, inflight, listenLoopback } from '../helpers/raw-http.js'
import { stream } from '../helpers/request-streams.js'

/** What the raw upstream made of one complete request it received. */
interface Seen {
  n: number
  method: string
  path: string
  bodyBytes: number
  /** Framing a downstream parser could read two ways: both CL and TE, or several Content-Length. */
  ambiguous: boolean
}

/**
 * A TCP upstream with a deliberately simple, lenient HTTP/1.1 request parser
 * (the kind a request-smuggling attack relies on): it records every complete
 * request it reads on each connection and answers each with a body naming
 * what it saw. Whatever the proxy sends it must parse into exactly the
 * requests the proxy answered.
 */
class RecordingUpstream {
  readonly server: Server
  readonly sockets = new Set<Socket>()
  seen: Seen[] = []
  /** Bytes that did not parse as a request (the proxy sent something malformed). */
  garbage: string[] = []
  #n = 0

  constructor() {
    this.server = createServer((socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
      socket.on('error', () => {})
      let buf = Buffer.alloc(0)
      socket.on('data', (d) => {
        buf = Buffer.concat([buf, d])
        for (;;) {
          const parsed = this.#parse(buf)
          if (parsed === 'incomplete') return
          if (parsed === 'garbage') {
            this.garbage.push(buf.toString('latin1').slice(0, 200))
            socket.destroy()
            return
          }
          buf = buf.subarray(parsed.used)
          const body = `U${parsed.seen.n} ${parsed.seen.method} ${parsed.seen.path} ${parsed.seen.bodyBytes}`
          this.seen.push(parsed.seen)
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
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

  #parse(buf: Buffer): { seen: Seen; used: number } | 'incomplete' | 'garbage' {
    const text = buf.toString('latin1')
    const end = text.indexOf('\r\n\r\n')
    if (end === -1) return text.length > 65536 ? 'garbage' : 'incomplete'
    const [line, ...fields] = text.slice(0, end).split('\r\n')
    const m = /^([A-Z]+) (\S+) HTTP\/1\.1$/.exec(line!)
    if (!m) return 'garbage'
    const lengths: string[] = []
    let chunked = false
    for (const f of fields) {
      const i = f.indexOf(':')
      if (i <= 0) return 'garbage'
      const name = f.slice(0, i).trim().toLowerCase()
      const value = f.slice(i + 1).trim()
      if (name === 'content-length') lengths.push(value)
      if (name === 'transfer-encoding') chunked ||= value.toLowerCase().includes('chunked')
    }
    const ambiguous = lengths.length > 1 || (lengths.length > 0 && chunked)
    let at = end + 4
    let bodyBytes = 0
    if (chunked) {
      for (;;) {
        const eol = text.indexOf('\r\n', at)
        if (eol === -1) return 'incomplete'
        const size = Number.parseInt(text.slice(at, eol).split(';')[0]!, 16)
        if (Number.isNaN(size)) return 'garbage'
        at = eol + 2
        if (size === 0) {
          const trailerEnd = text.indexOf('\r\n', at)
          if (trailerEnd === -1) return 'incomplete'
          if (trailerEnd !== at) return 'garbage' // the proxy sends no request trailers
          at += 2
          break
        }
        if (text.length < at + size + 2) return 'incomplete'
        bodyBytes += size
        at += size + 2
      }
    } else if (lengths.length > 0) {
      const n = Number(lengths[0])
      if (!Number.isInteger(n) || n < 0) return 'garbage'
      if (text.length < at + n) return 'incomplete'
      bodyBytes = n
      at += n
    }
    return { seen: { n: this.#n++, method: m[1]!, path: m[2]!, bodyBytes, ambiguous }, used: at }
  }
}

/** The responses in a stream of HTTP/1.1 responses (framed by Content-Length, or chunked). */
function responses(text: string): { status: number; body: string }[] {
  const out: { status: number; body: string }[] = []
  let at = 0
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at)
    if (end === -1) return out
    const [line, ...fields] = text.slice(at, end).split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(line!)?.[1] ?? 0)
    const header = (name: string) =>
      fields.find((f) => f.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim()
    at = end + 4
    if (header('transfer-encoding') === 'chunked') {
      let body = ''
      for (;;) {
        const eol = text.indexOf('\r\n', at)
        if (eol === -1) return out
        const size = Number.parseInt(text.slice(at, eol), 16)
        at = eol + 2
        if (size === 0) {
          at = text.indexOf('\r\n', at) + 2
          break
        }
        body += text.slice(at, at + size)
        at += size + 2
      }
      out.push({ status, body })
    } else {
      const n = Number(header('content-length') ?? 0)
      if (text.length < at + n) return out
      out.push({ status, body: text.slice(at, at + n) })
      at += n
    }
  }
}

/**
 * Sends the writes one by one (each its own TCP segment), then collects what
 * comes back until the proxy closes the connection or nothing has happened
 * for a while (then the client leaves). `proxyClosed`: the proxy ended it.
 */
async function exchange(proxy: TestProxy, writes: Buffer[]): Promise<{ text: string; proxyClosed: boolean }> {
  const socket = connect(proxy.port, '127.0.0.1')
  socket.setNoDelay(true)
  const got: Buffer[] = []
  let closed = false
  let last = performance.now()
  socket.on('data', (d) => {
    got.push(d)
    last = performance.now()
  })
  socket.on('error', () => {})
  socket.on('close', () => (closed = true))
  await new Promise<void>((r) => socket.once('connect', r))
  for (const w of writes) {
    if (closed) break
    socket.write(w)
    await new Promise((r) => setTimeout(r, 1))
  }
  last = performance.now()
  try {
    await expect
      .poll(() => closed || (inflight(proxy) === 0 && performance.now() - last > 250), {
        message: 'the exchange to settle',
        timeout: 5000,
        interval: 10,
      })
      .toBeTruthy()
  } finally {
    socket.destroy()
  }
  return { text: Buffer.concat(got).toString('latin1'), proxyClosed: closed }
}

describe('request desync: the upstream sees exactly the requests the proxy answered', () => {
  const upstream = new RecordingUpstream()
  let proxy: TestProxy

  beforeAll(async () => {
    const url = await upstream.listen()
    proxy = await startProxy({
      versions: { blue: { instances: [{ url }] } },
      outlier: { consecutiveFailures: 0 },
      // A retry would send one client request twice: that is not what this property is about.
      retries: { attempts: 0 },
      timeouts: { clientIdleMs: 1000, requestBodyMs: 300, upstreamMs: 1000 },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await upstream.close()
  })

  it('for generated CL/TE combinations, obfuscated and duplicate headers, bare LF/CR, chunk sizes, pipelining and splits', async () => {
    await fc.assert(
      fc.asyncProperty(stream, async (writes) => {
        upstream.seen = []
        const { text, proxyClosed } = await exchange(proxy, writes)
        await expect.poll(() => inflight(proxy), { message: 'nothing in flight' }).toBe(0)
        const answered = responses(text)
          .map((r) => r.body)
          .filter((b) => b.startsWith('U'))
        const seen = upstream.seen.map((s) => `U${s.n} ${s.method} ${s.path} ${s.bodyBytes}`)
        // Every upstream answer the client got is a request the upstream read, in order and with the same boundaries.
        expect(seen.slice(0, answered.length)).toEqual(answered)
        // When the proxy ends the connection, every request it forwarded was answered first (even
        // the one in flight when a malformed request followed it). Only when the client leaves
        // first may the one request then in flight go unanswered.
        expect(seen.length - answered.length).toBeLessThanOrEqual(proxyClosed ? 0 : 1)
        expect(upstream.seen.filter((s) => s.ambiguous)).toEqual([])
        expect(upstream.garbage).toEqual([])
      }),
      { numRuns: 100, endOnFailure: true },
    )
  })
})
