// Soak: --requests requests (default 10^6) at a fixed --rate through sluice in front of an upstream that
// misbehaves on purpose (bench/soak-upstream.js), with faults mixed into the healthy traffic:
//   2% client aborts mid-body, 2% upstream resets mid-body, 2% closes before headers,
//   2% garbage responses, 1% upstream timeouts (no answer within timeouts.upstreamMs),
//   and POSTs with a 4 KiB body among the healthy requests.
// Before (after a warm-up) and after, with the client's connections closed and upstream keep-alives timed
// out, it reads sluice's open fds (/proc/PID/fd), RSS and /metrics. It passes when the fds and the
// in-flight gauge are back at their start, RSS is within 10% of it, sluice_requests_total grew by exactly
// the number of requests sent, and no healthy request failed.
//   npm run bench:soak -- [--requests 1000000] [--rate 3000] [--connections 50] [--warmup 20000]
import { readdirSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { announce, pace, parseFlags, rssKiB, startChild } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const opts = parseFlags(
  { requests: 1_000_000, rate: 3000, connections: 50, warmup: 20_000 },
  'usage: npm run bench:soak -- [--requests N] [--rate N] [--connections N] [--warmup N]',
)
const REQUESTS = Number(opts.requests)
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

/**
 * The figures of a quiet sluice: the client's connections closed, then waiting until the open fds stop
 * falling (upstream keep-alives close after 4 s idle) for up to 15 s.
 */
async function quiet(pid, adminUrl) {
  let last = fds(pid)
  let stableSince = Date.now()
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline && Date.now() - stableSince < 5_000) {
    await new Promise((r) => setTimeout(r, 250))
    const now = fds(pid)
    if (now !== last) {
      last = now
      stableSince = Date.now()
    }
  }
  return { fds: fds(pid), rssKiB: rssKiB(pid), ...(await metrics(adminUrl)) }
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
  const sluice = startChild('sluice', [join(root, 'dist/cli/main.js'), 'serve', '--config', configPath])
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
  console.log(`start: ${before.fds} fds, RSS ${(before.rssKiB / 1024).toFixed(1)} MiB, ${heap(before)}, in flight ${before.inflight}`)

  pool = client()
  const t0 = performance.now()
  let sent = 0
  const progress = setInterval(() => {
    const s = (performance.now() - t0) / 1000
    console.log(
      `${s.toFixed(0)} s: ${sent} sent (${(sent / s).toFixed(0)}/s), ${fds(pid)} fds, RSS ${(rssKiB(pid) / 1024).toFixed(1)} MiB`,
    )
  }, 30_000)
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
    [`RSS within 10% (${(before.rssKiB / 1024).toFixed(1)} -> ${(after.rssKiB / 1024).toFixed(1)} MiB, ${(rssChange * 100).toFixed(1)}%)`]:
      Math.abs(rssChange) <= 0.1,
    [`sluice_requests_total grew by the requests sent (${counted} of ${REQUESTS})`]: counted === REQUESTS,
    [`no healthy request failed (${healthyFailed})`]: healthyFailed === 0,
  }
  console.log(`\n${REQUESTS} requests in ${seconds.toFixed(0)} s (${(REQUESTS / seconds).toFixed(0)}/s achieved)`)
  console.log(`counted by code: ${JSON.stringify(codes)}`)
  console.log(`end: ${heap(after)}; slowest client wait by kind, ms: ${JSON.stringify(slowest)}`)
  console.log(`client outcomes (kind result): ${JSON.stringify(Object.fromEntries(Object.entries(outcomes).sort()))}`)
  for (const [what, pass] of Object.entries(checks)) console.log(`${pass ? 'PASS' : 'FAIL'} ${what}`)
  ok = Object.values(checks).every(Boolean)
  await writeFile(
    join(outDir, 'soak.json'),
    JSON.stringify({ machine: info, opts, seconds, before, after, codes, outcomes, slowest, checks }, null, 2),
  )
} finally {
  await stopAll()
}
process.exitCode = ok ? 0 : 1
