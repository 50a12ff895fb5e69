import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { buildOnce, type ServeProcess, startServe } from '../helpers/cli.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const MiB = 1024 * 1024
const CHUNK = 64 * 1024
/**
 * What the kernel can hold in flight across the two loopback hops while a
 * side stalls (each hop: a send buffer plus an autotuned receive buffer, up
 * to net.ipv4.tcp_wmem / tcp_rmem maximum). The body is at least 32 MiB
 * more, so a sender can only finish during a stall if the proxy buffers.
 */
const KERNEL_BYTES = (() => {
  const max = (f: string) => Number(readFileSync(`/proc/sys/net/ipv4/${f}`, 'utf8').trim().split(/\s+/)[2])
  try {
    return 2 * (max('tcp_rmem') + max('tcp_wmem'))
  } catch {
    return 0
  }
})()
const CHUNKS = Math.ceil(Math.max(100 * MiB, KERNEL_BYTES + 32 * MiB) / CHUNK)
const TOTAL = CHUNK * CHUNKS
const BASE = randomBytes(CHUNK)
/**
 * RSS growth allowed. Well under the body, but not tight: the 64 KiB read
 * buffers are garbage the GC frees lazily (15-55 MiB measured).
 */
const MAX_GROWTH_MIB = 80

/** Chunk i of the test body: a random block stamped with its index, so order and loss both show. */
function chunkAt(i: number): Buffer {
  const b = Buffer.from(BASE)
  b.writeUInt32BE(i, 0)
  b.writeUInt32BE(i, CHUNK - 4)
  return b
}

const EXPECTED_SHA = (() => {
  const h = createHash('sha256')
  for (let i = 0; i < CHUNKS; i++) h.update(chunkAt(i))
  return h.digest('hex')
})()

/** Bytes the sender of the current transfer has handed over. */
let sent = 0

function* uploadBody(): Generator<Buffer> {
  for (let i = 0; i < CHUNKS; i++) {
    sent += CHUNK
    yield chunkAt(i)
  }
}

/** Writes the body with backpressure. */
async function streamDownload(res: ServerResponse): Promise<void> {
  for (let i = 0; i < CHUNKS; i++) {
    const more = res.write(chunkAt(i))
    sent += CHUNK
    if (!more) await new Promise((r) => res.once('drain', r))
    if (res.destroyed) return
  }
  res.end()
}

/**
 * The receiver's stall: reads nothing until the sender has made no progress
 * for 500 ms (or has sent everything); returns how much the sender had sent.
 */
async function stallUntilSenderStops(): Promise<number> {
  let last = -1
  let steadySince = Date.now()
  while (sent < TOTAL && Date.now() - steadySince < 500) {
    await sleep(50)
    if (sent !== last) {
      last = sent
      steadySince = Date.now()
    }
  }
  return sent
}

let sentDuringStall = 0

/** Hashes an upload, stalling after the first chunk; answers with its size and sha256. */
function readUpload(req: IncomingMessage, res: ServerResponse): void {
  const h = createHash('sha256')
  let bytes = 0
  req.on('data', (c: Buffer) => {
    if (bytes === 0) {
      req.pause()
      void stallUntilSenderStops().then((n) => {
        sentDuringStall = n
        req.resume()
      })
    }
    h.update(c)
    bytes += c.length
  })
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ bytes, sha256: h.digest('hex') }))
  })
}

/** Resets the process's RSS high-water mark (Linux clear_refs "5"), so each test measures its own peak. */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5')
}

/** The proxy process's memory from /proc: current RSS and its high-water mark, in MiB. */
function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) / 1024
  return { rss: kb('VmRSS'), peak: kb('VmHWM') }
}

describe.runIf(process.platform === 'linux')('bodies of 100 MiB and more stream through the proxy process', () => {
  let dir: string
  let app: TestUpstream
  let proxy: ServeProcess

  beforeAll(async () => {
    await buildOnce()
    app = await startUpstream('app', (req, res) => {
      if (req.url === '/download') {
        req.resume()
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) })
        void streamDownload(res)
      } else if (req.url === '/upload') {
        readUpload(req, res)
      } else {
        req.resume()
        req.on('end', () => res.end('warm'))
      }
    })
    dir = mkdtempSync(join(tmpdir(), 'sluice-bodies-'))
    const file = join(dir, 'bodies.yaml')
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n` +
        `versions:\n  blue:\n    instances:\n      - url: ${app.url}\n`,
    )
    proxy = await startServe(file)
    // Warm up the data path so its one-off allocations are in the baseline.
    for (let i = 0; i < 20; i++) {
      const res = await request(`${proxy.url}/warm`, { method: 'POST', body: chunkAt(i) })
      await res.body.dump()
    }
  }, 180_000)
  afterAll(async () => {
    expect(await proxy?.stop()).toBe(0)
    await app?.close()
    rmSync(dir, { recursive: true, force: true })
  })
  beforeEach(() => {
    sent = 0
    sentDuringStall = 0
    resetPeak(proxy.pid)
  })

  it('an upload to a slow reader arrives whole and in order; while the upstream stalls, the client is held back', async () => {
    const before = memory(proxy.pid)
    const res = await request(`${proxy.url}/upload`, {
      method: 'PUT',
      body: Readable.from(uploadBody()),
      headers: { 'content-length': String(TOTAL) },
    })
    expect(res.statusCode).toBe(200)
    expect(await res.body.json()).toEqual({ bytes: TOTAL, sha256: EXPECTED_SHA })
    expect(sentDuringStall, 'the client could send everything while the upstream read nothing').toBeLessThan(TOTAL)
    const growth = memory(proxy.pid).peak - before.rss
    expect(growth, `proxy RSS grew by ${growth.toFixed(1)} MiB`).toBeLessThan(MAX_GROWTH_MIB)
  }, 120_000)

  it('a chunked upload (no Content-Length) arrives whole, the client held back the same way', async () => {
    const res = await request(`${proxy.url}/upload`, { method: 'POST', body: Readable.from(uploadBody()) })
    expect(res.statusCode).toBe(200)
    expect(await res.body.json()).toEqual({ bytes: TOTAL, sha256: EXPECTED_SHA })
    expect(sentDuringStall).toBeLessThan(TOTAL)
  }, 120_000)

  it('a download arrives whole and in order; while the client stalls, the upstream is held back', async () => {
    const before = memory(proxy.pid)
    const res = await request(`${proxy.url}/download`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-length']).toBe(String(TOTAL))
    const h = createHash('sha256')
    let bytes = 0
    for await (const c of res.body) {
      if (bytes === 0) sentDuringStall = await stallUntilSenderStops()
      h.update(c as Buffer)
      bytes += (c as Buffer).length
    }
    expect({ bytes, sha256: h.digest('hex') }).toEqual({ bytes: TOTAL, sha256: EXPECTED_SHA })
    expect(sentDuringStall, 'the upstream could send everything while the client read nothing').toBeLessThan(TOTAL)
    const growth = memory(proxy.pid).peak - before.rss
    expect(growth, `proxy RSS grew by ${growth.toFixed(1)} MiB`).toBeLessThan(MAX_GROWTH_MIB)
  }, 120_000)
})
