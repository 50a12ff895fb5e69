// Soak: --requests requests (default 10^6) at a fixed --rate through sluice in front of an upstream that
// misbehaves on purpose (bench/soak-upstream.js), with faults mixed into the healthy traffic:
//   2% client aborts mid-body, 2% upstream resets mid-body, 2% closes before headers,
//   2% garbage responses, 1% upstream timeouts (no answer within timeouts.upstreamMs),
//   and POSTs with a 4 KiB body among the healthy requests.
// Before (after a warm-up) and after, with the client's connections closed and upstream keep-alives timed
// out (soak-upstream's Keep-Alive hint: 9 s idle), it reads sluice's open fds (/proc/PID/fd), RSS and /metrics;
// RSS again once V8 has run its idle collection (quiet() says why; the start must have seen it). It passes
// when the fds and the in-flight gauge are back at their start, the idle RSS is within 10% of the start's, sluice_requests_total
// grew by exactly the number of requests sent, and no healthy request failed. Every 5 s of the run it also
// records where the RSS is (memory(): malloc arenas, V8's spaces), printed every 30 s and kept in soak.json.
//   --sluice-node-args passes Node flags to sluice (e.g. "--trace-gc", "--max-semi-space-size=8").
//   npm run bench:soak -- [--requests 1000000] [--rate 3000] [--connections 50] [--warmup 20000]
import { readdirSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { announce, median, pace, parseFlags, rssKiB, startChild } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const opts = parseFlags(
  { requests: 1_000_000, rate: 3000, connections: 50, warmup: 20_000, 'sluice-node-args': '' },
  'usage: npm run bench:soak -- [--requests N] [--rate N] [--connections N] [--warmup N] [--sluice-node-args "--flag ..."]',
)
const REQUESTS = Number(opts.requests)
// sluice runs as the README says to run it (glibc keeps up to 32 MiB of freed heap: the upload bench's
// setting), so the RSS measured is the one an operator gets. An explicit GLIBC_TUNABLES wins.
process.env.GLIBC_TUNABLES ??= 'glibc.malloc.trim_threshold=33554432'
const RATE = Number(opts.rate)
const UPSTREAM_MS = 200

/** One hundred request kinds in a fixed shuffled order: request i is KINDS[i % 100]. */
const KINDS = (() => {
  const mix = { abort: 2, reset: 2, close: 2, garbage: 2, hang: 1, post: 10 }
  const list = []
  for (const [kind, n] of Object.entries(mix)) for (let i = 0; i < n; i++) list.push(kind)
  while (list.length < 100) list.push('ok')
  let seed = 17
  for (let i = list.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    const j = seed % (i + 1)
    ;[list[i], list[j]] = [list[j], list[i]]
  }
  return list
})()
const PATHS = { ok: '/ok', post: '/ok', abort: '/slow-body', reset: '/reset', close: '/close', garbage: '/garbage', hang: '/hang' }
const POST_BODY = Buffer.alloc(4096, 'p')

const info = announce()
console.log(`${REQUESTS} requests at ${RATE}/s over ${opts.connections} connections (warm-up ${opts.warmup})\n`)

const outcomes = {}
/** Longest client-side wait per kind, ms: a stuck request shows here before anything else does. */
const slowest = {}
let healthyFailed = 0
/** Sends request i of the mix; never rejects (outcomes are counted by kind). */
async function one(pool, i) {
  const kind = KINDS[i % 100]
  const ac = kind === 'abort' ? new AbortController() : undefined
  const t0 = performance.now()
  let result
  try {
    const res = await pool.request({
      path: PATHS[kind],
      method: kind === 'post' ? 'POST' : 'GET',
      body: kind === 'post' ? POST_BODY : null,
      signal: ac?.signal,
    })
    if (ac) {
      ac.abort()
      await res.body.dump().catch(() => {})
      result = 'aborted'
    } else {
      await res.body.arrayBuffer()
      result = String(res.statusCode)
    }
  } catch (err) {
    result = err.code ?? err.name
  }
  const key = `${kind} ${result}`
  outcomes[key] = (outcomes[key] ?? 0) + 1
  slowest[kind] = Math.max(slowest[kind] ?? 0, Math.round(performance.now() - t0))
  if ((kind === 'ok' || kind === 'post') && result !== '200') healthyFailed++
}

/**
 * sluice_requests_total summed over its labels, the sum of sluice_inflight_requests, the codes, and the
 * V8 heap in use (to tell retained garbage from a leak when RSS moves).
 */
async function metrics(adminUrl) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  let requests = 0
  let inflight = 0
  let heapUsed = 0
  const codes = {}
  for (const line of text.split('\n')) {
    if (line.startsWith('sluice_requests_total{')) {
      const n = Number(line.slice(line.lastIndexOf(' ') + 1))
      requests += n
      const code = /code="(\d+)"/.exec(line)?.[1]
      codes[code] = (codes[code] ?? 0) + n
    } else if (line.startsWith('sluice_inflight_requests{')) inflight += Number(line.slice(line.lastIndexOf(' ') + 1))
    else if (line.startsWith('nodejs_heap_size_used_bytes ')) heapUsed = Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return { requests, inflight, codes, heapUsed }
}

const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length

const MiB = (bytes) => Math.round((bytes / 2 ** 20) * 10) / 10

/**
 * Where sluice's resident memory is, in MiB: RSS split into file-backed (the node binary and libraries,
 * which do not grow) and anonymous; of the anonymous, glibc's main-arena heap ([heap] in smaps), the heaps
 * of its other malloc arenas (64 MiB-aligned reservations) and the rest (V8's pages, thread stacks,
 * large mmap'd blocks); and V8's own figures from /metrics: committed heap by space, heap in use, and
 * external memory (ArrayBuffers and Buffers whose bytes live in malloc). Tells a leak in V8's heap
 * (heap used grows) from memory an allocator keeps after a peak (anonymous grows, heap used does not).
 */
async function memory(pid, adminUrl) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024
  const maps = []
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line)
    if (head) {
      const anon = head[4] === '0' && head[5] === ''
      maps.push({ start: BigInt(`0x${head[1]}`), end: BigInt(`0x${head[2]}`), perms: head[3], anon, name: head[5], rss: 0 })
    } else if (maps.length > 0 && line.startsWith('Rss:')) maps.at(-1).rss = Number(/(\d+)/.exec(line)[1]) * 1024
  }
  // A non-main malloc arena's heap: glibc reserves 64 MiB at a 64 MiB-aligned address and makes its front
  // read-write as the arena grows, leaving the rest an inaccessible mapping right after it.
  const ARENA = 64n << 20n
  let brkHeap = 0
  let arenaHeaps = 0
  let arenas = 0
  for (const [i, m] of maps.entries()) {
    if (m.name === '[heap]') brkHeap += m.rss
    if (!m.anon || !m.perms.startsWith('rw') || m.start % ARENA !== 0n) continue
    const tail = maps[i + 1]
    const whole = m.end - m.start === ARENA ||
      (tail?.anon && tail.perms.startsWith('---') && tail.start === m.end && tail.end - m.start === ARENA)
    if (!whole) continue
    arenas++
    arenaHeaps += m.rss
  }
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const gauge = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN)
  const spaces = {}
  for (const m of text.matchAll(/^nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)$/gm)) spaces[m[1]] = MiB(Number(m[2]))
  const rssAnon = kib('RssAnon')
  return {
    rss: MiB(kib('VmRSS')),
    rssFile: MiB(kib('RssFile') + kib('RssShmem')),
    rssAnon: MiB(rssAnon),
    mallocMainHeap: MiB(brkHeap),
    mallocArenaHeaps: MiB(arenaHeaps),
    mallocArenas: arenas,
    otherAnon: MiB(rssAnon - brkHeap - arenaHeaps),
    v8Committed: MiB(gauge('nodejs_heap_size_total_bytes')),
    v8Used: MiB(gauge('nodejs_heap_size_used_bytes')),
    external: MiB(gauge('nodejs_external_memory_bytes')),
    spaces,
  }
}

/**
 * How long sluice keeps an idle upstream connection here: soak-upstream answers `Keep-Alive: timeout=10`,
 * which undici honours (less its 1 s threshold) over the pool's own 4 s. Those connections are legitimate
 * (bounded by limits.upstreamConnections) but their number at any moment follows the last second's
 * concurrency, so the start and end figures are taken once they have all closed.
 */
const UPSTREAM_KEEPALIVE_MS = 9_000

/** How many mark-compact collections V8 has run in sluice (prom-client's GC histogram). */
async function majorGcs(adminUrl) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  return Number(/^nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)$/m.exec(text)?.[1] ?? Number.NaN)
}

/** The longest wait for V8's idle collection: its memory reducer has a 100 s watchdog. */
const SETTLE_MAX_MS = 150_000

/**
 * The figures of a quiet sluice: the client's connections closed, the upstream keep-alives past their
 * idle timeout, the open fds unchanged for 5 s (up to 30 s in all): `early`. Then the figures once V8
 * has done what it does to an idle heap: with the load gone, its memory reducer (a timer that finds the
 * allocation rate low, or its 100 s watchdog) runs up to three mark-compacts that shrink the young
 * generation to its minimum and give the old generation's free pages back. Until then the committed
 * heap is wherever the last load left it (old space up to about 1.5 times the live heap, plus 32 MiB
 * of young generation), which is what made RSS at 15 s of idle swing by up to 30 MiB between runs of
 * the same build. `settled` says whether that collection was seen within SETTLE_MAX_MS.
 */
async function quiet(pid, adminUrl) {
  const start = Date.now()
  const majors = await majorGcs(adminUrl)
  await new Promise((r) => setTimeout(r, UPSTREAM_KEEPALIVE_MS + 1_000))
  let last = fds(pid)
  let stableSince = Date.now()
  const deadline = start + 30_000
  while (Date.now() < deadline && Date.now() - stableSince < 5_000) {
    await new Promise((r) => setTimeout(r, 250))
    const now = fds(pid)
    if (now !== last) {
      last = now
      stableSince = Date.now()
    }
  }
  const early = { s: Math.round((Date.now() - start) / 1000), fds: fds(pid), rssKiB: rssKiB(pid), memory: await memory(pid, adminUrl) }
  let settled = false
  while (!settled && Date.now() - start < SETTLE_MAX_MS) {
    await new Promise((r) => setTimeout(r, 1_000))
    const m = await memory(pid, adminUrl)
    settled = (await majorGcs(adminUrl)) > majors && m.spaces.new <= 2
  }
  // The reducer's later collections follow 500 ms apart.
  if (settled) await new Promise((r) => setTimeout(r, 3_000))
  // The fds as read once stable: later, a health probe's connection may be open at the moment of reading.
  return {
    fds: early.fds,
    rssKiB: rssKiB(pid),
    memory: await memory(pid, adminUrl),
    settled,
    settleS: Math.round((Date.now() - start) / 1000),
    early,
    ...(await metrics(adminUrl)),
  }
}

await mkdir(outDir, { recursive: true })
const children = []
const stopAll = () => Promise.all(children.map((c) => c.stop()))
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

let ok
try {
  const upstream = startChild('soak-upstream', [join(root, 'bench/soak-upstream.js')])
  children.push(upstream)
  const { ports } = await upstream.ready
  const configPath = join(outDir, 'sluice-soak.json')
  await writeFile(
    configPath,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token: 'bench-token' },
      versions: { app: { instances: ports.map((p) => ({ url: `http://127.0.0.1:${p}` })) } },
      health: { path: '/healthz', intervalMs: 1000 },
      // Ejection off: the faults are by path, not by instance, and the soak counts every request.
      outlier: { consecutiveFailures: 0 },
      timeouts: { upstreamMs: UPSTREAM_MS },
      log: { level: 'info' },
    }),
  )
  const execArgv = opts['sluice-node-args'].split(' ').filter(Boolean)
  const sluice = startChild('sluice', [join(root, 'dist/cli/main.js'), 'serve', '--config', configPath], { execArgv })
  children.push(sluice)
  const ready = await sluice.ready
  const url = `http://127.0.0.1:${ready.port}`
  const adminUrl = `http://127.0.0.1:${ready.adminPort}`
  const pid = sluice.proc.pid
  const client = () => new Pool(url, { connections: Number(opts.connections), pipelining: 1, keepAliveTimeout: 10_000 })

  let pool = client()
  await pace(RATE, Number(opts.warmup), (i) => one(pool, i))
  await pool.close()
  const before = await quiet(pid, adminUrl)
  for (const k of Object.keys(outcomes)) delete outcomes[k]
  for (const k of Object.keys(slowest)) delete slowest[k]
  healthyFailed = 0
  const heap = (m) => `heap used ${(m.heapUsed / 2 ** 20).toFixed(1)} MiB`
  const breakdown = (m) =>
    `RSS ${m.rss} MiB (file ${m.rssFile}, anon ${m.rssAnon}: malloc main ${m.mallocMainHeap} + ${m.mallocArenas} arenas ` +
    `${m.mallocArenaHeaps}, other ${m.otherAnon}; V8 committed ${m.v8Committed} [new ${m.spaces.new}, old ${m.spaces.old}], ` +
    `used ${m.v8Used}, external ${m.external})`
  const idle = (q) => (q.settled ? `after V8's idle collection (${q.settleS} s idle)` : `V8's idle collection not seen in ${q.settleS} s`)
  console.log(`start at ${before.early.s} s idle: ${breakdown(before.early.memory)}`)
  console.log(`start ${idle(before)}: ${before.fds} fds, in flight ${before.inflight}, ${breakdown(before.memory)}`)

  pool = client()
  const t0 = performance.now()
  let sent = 0
  const samples = []
  let ticks = 0
  const progress = setInterval(async () => {
    const s = (performance.now() - t0) / 1000
    const m = await memory(pid, adminUrl).catch(() => undefined)
    if (!m) return
    samples.push({ s: Math.round(s), sent, ...m })
    if (++ticks % 6 !== 0) return
    console.log(
      `${s.toFixed(0)} s: ${sent} sent (${(sent / s).toFixed(0)}/s), ${fds(pid)} fds, ${breakdown(m)}`,
    )
  }, 5_000)
  await pace(RATE, REQUESTS, (i) => {
    sent++
    return one(pool, i)
  })
  clearInterval(progress)
  const seconds = (performance.now() - t0) / 1000
  await pool.close()
  const after = await quiet(pid, adminUrl)

  const counted = after.requests - before.requests
  const rssChange = after.rssKiB / before.rssKiB - 1
  const codes = Object.fromEntries(Object.keys(after.codes).map((c) => [c, after.codes[c] - (before.codes[c] ?? 0)]))
  const checks = {
    [`fds back to start (${before.fds} -> ${after.fds})`]: after.fds <= before.fds,
    [`in-flight gauge back to start (${before.inflight} -> ${after.inflight})`]: after.inflight === before.inflight,
    // The start must be after V8's idle collection: before it, uncollected garbage raises the base and
    // hides growth. An end read before it (not seen within SETTLE_MAX_MS) still counts that garbage, which
    // can only make the end look worse, so it is compared as read and said.
    [`idle RSS within 10% (${(before.rssKiB / 1024).toFixed(1)} -> ${(after.rssKiB / 1024).toFixed(1)} MiB, ${(rssChange * 100).toFixed(1)}%` +
    `${before.settled ? '' : "; V8's idle collection not seen at the start"}` +
    `${after.settled ? '' : "; at the end V8's idle collection not seen, uncollected garbage included"})`]:
      Math.abs(rssChange) <= 0.1 && before.settled,
    [`sluice_requests_total grew by the requests sent (${counted} of ${REQUESTS})`]: counted === REQUESTS,
    [`no healthy request failed (${healthyFailed})`]: healthyFailed === 0,
  }
  console.log(`\n${REQUESTS} requests in ${seconds.toFixed(0)} s (${(REQUESTS / seconds).toFixed(0)}/s achieved)`)
  console.log(`counted by code: ${JSON.stringify(codes)}`)
  console.log(`end at ${after.early.s} s idle: ${breakdown(after.early.memory)}`)
  console.log(`end ${idle(after)}: ${after.fds} fds, in flight ${after.inflight}, ${breakdown(after.memory)}`)
  const underLoad = (from, to) => {
    const rss = samples.filter((x) => x.s >= from && x.s <= to).map((x) => x.rss)
    return rss.length ? `${median(rss).toFixed(1)} MiB median of ${rss.length}` : 'no samples'
  }
  const last = samples.filter((x) => x.sent < REQUESTS).at(-1)?.s ?? 0
  console.log(`RSS under load: first minute ${underLoad(0, 60)}, last minute ${underLoad(last - 60, last)}, peak ${Math.max(...samples.map((x) => x.rss))} MiB`)
  console.log(`end: ${heap(after)}; slowest client wait by kind, ms: ${JSON.stringify(slowest)}`)
  console.log(`client outcomes (kind result): ${JSON.stringify(Object.fromEntries(Object.entries(outcomes).sort()))}`)
  for (const [what, pass] of Object.entries(checks)) console.log(`${pass ? 'PASS' : 'FAIL'} ${what}`)
  ok = Object.values(checks).every(Boolean)
  await writeFile(
    join(outDir, 'soak.json'),
    JSON.stringify({ machine: info, opts, seconds, before, after, codes, outcomes, slowest, checks, samples }, null, 2),
  )
} finally {
  await stopAll()
}
process.exitCode = ok ? 0 : 1
