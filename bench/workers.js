// Workers (README "Workers and self-upgrade"), two runs:
//   --mode scale    interleaved rounds of autocannon against
//                     single   sluice in one process (no `workers`),
//                     w1       sluice with a primary and 1 worker,
//                     w2       sluice with a primary and 2 workers,
//                     nginx2   nginx with 2 worker processes (bench/edge-peers.js),
//                   reporting req/s, proxy CPU-seconds per request over the whole process tree (primary and
//                   workers; nginx master and workers) and the load generator's own CPU use. Closed loop by
//                   default; --scale-rate R paces every target at R req/s, --rate-per-worker R at R x its serving
//                   processes (one load per worker, whatever their count).
//   --mode restart  sluice with 2 workers under a paced load of --requests requests at --rate req/s; SIGUSR2
//                   twice during it (the second once the first is over): failed requests, and p99 before the
//                   first signal against p99 while a restart runs, and the 3 s after each restart ends (when the
//                   last old worker closes its kept-alive connections and their clients reconnect). --timeline
//                   prints, around each restart, p50/p99/max per 100 ms next to the workers' events. --load even
//                   spreads the requests evenly on an undici pool instead of autocannon's bursts (see autocannonLoad).
//   --sluice-node-args passes Node flags to sluice's primary (its workers inherit them), e.g. "--always-sparkplug".
//   --renice-boot (a diagnosis, needs root to renice back): each new worker runs at nice 19 from its fork until it
//                   logs "worker serving", so its boot takes only CPU the serving processes leave: what the restart's
//                   tail owes to the boot competing for the cores.
//   npm run bench:workers -- --mode scale --duration 5 --rounds 3
//   npm run bench:workers -- --mode restart --requests 120000 --rate 3000
import { readdirSync, readFileSync } from 'node:fs'
import { setPriority } from 'node:os'
import { createInterface } from 'node:readline'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { Pool } from 'undici'
import { startNginx, versionOf, NGINX } from './edge-peers.js'
import {
  announce,
  cpuMs,
  latencyHistogram,
  median,
  parseFlags,
  pace,
  percentileMs,
  recordMs,
  serveBlueGreen,
  startBlueGreen,
  usageError,
} from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const flags = parseFlags(
  {
    mode: 'scale',
    duration: 5,
    rounds: 3,
    warmup: 1,
    connections: 50,
    targets: 'single,w1,w2,nginx2',
    requests: 120_000,
    rate: 3000,
    'scale-rate': 0,
    'rate-per-worker': 0,
    timeline: false,
    load: 'autocannon',
    'sluice-node-args': '',
    'renice-boot': false,
  },
  'usage: npm run bench:workers -- [--mode scale|restart] [--duration S] [--rounds N] [--warmup S] [--connections N] ' +
    '[--targets single,w1,w2,nginx2] [--scale-rate R | --rate-per-worker R] [--requests N] [--rate R] [--load autocannon|even] [--timeline] ' +
    '[--sluice-node-args "--flag ..."] [--renice-boot]',
)
if (flags.mode !== 'scale' && flags.mode !== 'restart') usageError(`--mode is scale or restart, not "${flags.mode}"`)
if (flags.load !== 'autocannon' && flags.load !== 'even') usageError(`--load is autocannon or even, not "${flags.load}"`)
if (flags['scale-rate'] > 0 && flags['rate-per-worker'] > 0) usageError('--scale-rate and --rate-per-worker exclude each other')

const TOKEN = 'bench-token'
const NODE_ARGS = flags['sluice-node-args'].split(' ').filter(Boolean)
const info = announce()
const children = []
const stopAll = () => Promise.all(children.map((c) => c.stop()))
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

/** The pid and its children's pids (one level: a primary's workers, nginx's master's workers). */
function tree(pid) {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()
    return [pid, ...(kids === '' ? [] : kids.split(' ').map(Number))]
  } catch {
    return [pid]
  }
}

/** Every thread of `pid` to `nice` (Linux's nice is per thread); a process already gone is skipped. */
function renice(pid, nice) {
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) setPriority(Number(tid), nice)
  } catch {}
}

function treeCpuMs(pids) {
  return pids.reduce((sum, p) => sum + (cpuMs(p) ?? 0), 0)
}

try {
  const ups = await startBlueGreen(root, children, 128)
  const upstreams = { blue: [{ url: ups.blue }], green: [{ url: ups.green }] }
  const settings = (workers) => ({
    ...(workers === undefined ? {} : { workers }),
    weights: { blue: 90, green: 10 },
    health: { intervalMs: 2000, timeoutMs: 1000 },
    log: { level: 'warn' },
  })
  if (flags.mode === 'scale') await scale(upstreams, settings)
  else await restart(upstreams, settings)
} finally {
  await stopAll()
}

async function scale(upstreams, settings) {
  const targets = flags.targets.split(',')
  const known = { single: undefined, w1: 1, w2: 2, nginx2: 'nginx' }
  // --rate-per-worker paces each target at R x its serving processes, so each worker (or nginx worker) sees the
  // same load whatever the count: what adding a worker costs per request, apart from spreading one load thinner
  // (fewer requests per event-loop wakeup), which --scale-rate measures.
  const servingProcesses = (t) => (t === 'nginx2' ? 2 : (known[t] ?? 1))
  const rateOf = (t) => (flags['rate-per-worker'] > 0 ? flags['rate-per-worker'] * servingProcesses(t) : flags['scale-rate'])
  for (const t of targets) if (!(t in known)) usageError(`unknown target "${t}" (known: ${Object.keys(known)})`)
  console.log(`nginx: ${versionOf(NGINX)}`)
  const running = {}
  for (const t of targets) {
    if (t === 'nginx2') {
      const n = await startNginx(upstreams.blue[0].url, { workers: 2 })
      children.push(n)
      await n.ready
      running[t] = { url: n.url, pid: n.proc.pid }
    } else {
      const s = await serveBlueGreen(root, upstreams, TOKEN, settings(known[t]), NODE_ARGS)
      children.push({ stop: s.stop })
      running[t] = { url: s.url, pid: s.proxy.proc.pid }
    }
  }
  const results = Object.fromEntries(targets.map((t) => [t, { rps: [], cpuPerReqUs: [], loadgenCores: [] }]))
  for (let round = 0; round < flags.rounds; round++) {
    // The order rotates each round, so no target always runs on a machine warmed (or loaded) by the same one.
    const order = targets.map((_, i) => targets[(i + round) % targets.length])
    for (const t of order) {
      const { url, pid } = running[t]
      await autocannon({ url: `${url}/api/items`, connections: flags.connections, duration: flags.warmup })
      const pids = tree(pid)
      const cpu0 = treeCpuMs(pids)
      const own0 = cpuMs(pid) ?? 0
      const gen0 = process.cpuUsage()
      const t0 = performance.now()
      const r = await autocannon({
        url: `${url}/api/items`,
        connections: flags.connections,
        duration: flags.duration,
        ...(rateOf(t) > 0 && { overallRate: rateOf(t) }),
      })
      const wallMs = performance.now() - t0
      const gen = process.cpuUsage(gen0)
      const cpu = treeCpuMs(pids) - cpu0
      const own = (cpuMs(pid) ?? 0) - own0
      const total = r.requests.total
      if (r.errors + r.non2xx > 0) console.log(`  ${t}: ${r.errors} errors, ${r.non2xx} non-2xx`)
      results[t].rps.push(total / (wallMs / 1000))
      results[t].cpuPerReqUs.push((cpu * 1000) / total)
      results[t].loadgenCores.push((gen.user + gen.system) / 1000 / wallMs)
      console.log(
        `round ${round + 1} ${t.padEnd(6)} ${Math.round(total / (wallMs / 1000))} req/s, ` +
          `${((cpu * 1000) / total).toFixed(1)} us CPU/req over ${pids.length} processes ` +
          `(${((own * 1000) / total).toFixed(1)} of it the primary or master), ` +
          `load generator ${((gen.user + gen.system) / 1000 / wallMs).toFixed(2)} cores`,
      )
    }
  }
  console.log('\nmedians')
  for (const t of targets) {
    const r = results[t]
    console.log(
      `${t.padEnd(6)} ${Math.round(median(r.rps))} req/s, ${median(r.cpuPerReqUs).toFixed(1)} us CPU/req, ` +
        `load generator ${median(r.loadgenCores).toFixed(2)} cores`,
    )
  }
  if (results.w1 && results.w2) {
    const pairs = results.w2.cpuPerReqUs.map((c, i) => c / results.w1.cpuPerReqUs[i])
    console.log(`CPU/req w2 / w1 per round: ${pairs.map((x) => x.toFixed(3)).join(' ')} (median ${median(pairs).toFixed(3)})`)
  }
  console.log(`load average after: ${info && (await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`)
}

async function restart(upstreams, settings) {
  // Log level info: the workers' events (serving, exiting) are the timeline's marks; no per-request line is logged.
  const s = await serveBlueGreen(root, upstreams, TOKEN, {
    ...settings(2),
    log: { level: 'info' },
    drain: { timeoutMs: 10_000 },
  }, NODE_ARGS)
  children.push({ stop: s.stop })
  // --renice-boot: the workers forked after this point, held at nice 19 until they serve.
  const reniced = new Set()
  const known = new Set(tree(s.proxy.proc.pid))
  const events = []
  createInterface({ input: s.proxy.proc.stdout }).on('line', (line) => {
    let m
    try {
      m = JSON.parse(line)
    } catch {
      return
    }
    if (m?.msg === 'worker serving' && reniced.has(m.workerPid)) {
      renice(m.workerPid, 0)
      reniced.delete(m.workerPid)
    }
    if (typeof m?.msg === 'string' && /worker|restart/.test(m.msg)) {
      events.push({ at: Date.parse(m.time), what: `${m.msg}${m.worker === undefined ? '' : ` (${m.worker})`}${m.startMs === undefined ? '' : ` after ${m.startMs} ms`}` })
    }
  })
  const watcher = flags['renice-boot']
    ? setInterval(() => {
        for (const pid of tree(s.proxy.proc.pid)) {
          if (known.has(pid)) continue
          known.add(pid)
          renice(pid, 19)
          reniced.add(pid)
        }
      }, 5)
    : undefined
  const samples = flags.timeline ? [] : undefined
  const state = async () =>
    (await fetch(`${s.adminUrl}/v1/state`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()
  const before = latencyHistogram()
  const during = latencyHistogram()
  const other = latencyHistogram()
  const settle = latencyHistogram()
  const windows = []
  let phase = 'warm'
  let failed = 0
  const restarts = []
  const t0 = performance.now()
  const onResponse = (status, ms) => {
    if (status >= 500) failed++
    const now = Date.now()
    recordMs(phase === 'before' ? before : phase === 'during' ? during : other, ms)
    if (phase === 'after' && windows.length > 0 && now - windows[windows.length - 1].end < 3000) recordMs(settle, ms)
    samples?.push(now, ms)
  }
  let signalledAt = 0
  const onError = (err) => {
    failed++
    samples?.push(Date.now(), -1)
    // Rare by design: each gets a line saying what failed and when, against the last signal.
    const when = signalledAt === 0 ? 'before any SIGUSR2' : `${Date.now() - signalledAt} ms after SIGUSR2 ${restarts.length + (phase === 'during' ? 1 : 0)}`
    console.log(`failed request (${phase}, ${when}): ${err?.code ?? err?.name ?? 'error'} ${err?.message ?? ''}`)
  }
  const load = flags.load === 'even' ? evenLoad(s.url, onResponse, onError) : autocannonLoad(s.url, onResponse, onError)
  const expectedMs = (flags.requests / flags.rate) * 1000
  const driver = (async () => {
    await sleep(expectedMs * 0.05)
    phase = 'before'
    for (const at of [0.3, 0.6]) {
      await sleep(Math.max(0, expectedMs * at - (performance.now() - t0)))
      const generation = (await state()).restart.generation
      phase = 'during'
      const began = performance.now()
      const window = { start: Date.now(), end: 0 }
      signalledAt = window.start
      process.kill(s.proxy.proc.pid, 'SIGUSR2')
      for (;;) {
        const r = (await state()).restart
        if (r.status === 'idle' && r.generation > generation) break
        await sleep(50)
      }
      restarts.push(Math.round(performance.now() - began))
      window.end = Date.now()
      windows.push(window)
      phase = 'after'
    }
  })()
  const r = await load
  await driver
  clearInterval(watcher)
  const wallMs = performance.now() - t0
  console.log(
    `${r.total} requests in ${(wallMs / 1000).toFixed(1)} s (${flags.rate} req/s, --load ${flags.load}, ${flags.connections} connections), ` +
      `errors ${r.errors}${r.errorCodes && r.errors > 0 ? ` ${JSON.stringify(r.errorCodes)}` : ''}, non-2xx ${r.non2xx}, failed (5xx or no answer) ${failed}`,
  )
  console.log(`restarts (SIGUSR2 to idle): ${restarts.join(' ms, ')} ms`)
  const p99b = percentileMs(before, 99)
  const p99d = percentileMs(during, 99)
  console.log(
    `p99 before ${p99b.toFixed(2)} ms (n ${before.totalCount}), during restarts ${p99d.toFixed(2)} ms (n ${during.totalCount}): ` +
      `${(p99d / p99b).toFixed(2)}x; p50 ${percentileMs(before, 50).toFixed(2)} / ${percentileMs(during, 50).toFixed(2)} ms`,
  )
  console.log(
    `3 s after each restart (not in "during"): p99 ${percentileMs(settle, 99).toFixed(2)} ms (n ${settle.totalCount}), ` +
      `p50 ${percentileMs(settle, 50).toFixed(2)} ms`,
  )
  if (samples) printTimeline(samples, windows, events)
}

/** p50/p99/max per 100 ms from 0.5 s before each restart to 3 s after it, with the events logged in each slot. */
function printTimeline(samples, windows, events) {
  const SLOT = 100
  for (const [n, w] of windows.entries()) {
    const from = w.start - 500
    const to = w.end + 3000
    const slots = Array.from({ length: Math.ceil((to - from) / SLOT) }, () => [])
    for (let i = 0; i < samples.length; i += 2) {
      const at = samples[i]
      if (at >= from && at < to) slots[Math.floor((at - from) / SLOT)].push(samples[i + 1])
      else if (samples[i + 1] < 0) console.log(`failed request at ${at - w.start} ms from restart ${n + 1}'s signal`)
    }
    console.log(`\nrestart ${n + 1}: t=0 at SIGUSR2, ends (idle) at +${w.end - w.start} ms`)
    console.log('     t ms     n   p50   p99   max  events')
    slots.forEach((slot, i) => {
      let ms = slot
      const at = from + i * SLOT
      const marks = events.filter((e) => e.at >= at && e.at < at + SLOT).map((e) => e.what)
      const failures = ms.filter((x) => x < 0).length
      if (failures > 0) marks.push(`${failures} failed`)
      ms = ms.filter((x) => x >= 0).sort((a, b) => a - b)
      const q = (p) => (ms.length === 0 ? 0 : ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))])
      console.log(
        `${String(at - w.start).padStart(9)} ${String(ms.length).padStart(5)} ${q(50).toFixed(0).padStart(5)} ` +
          `${q(99).toFixed(0).padStart(5)} ${(ms.at(-1) ?? 0).toFixed(0).padStart(5)}  ${marks.join('; ')}`,
      )
    })
  }
}

/**
 * autocannon's overallRate: each connection sends its share of a second back to back from the second's start, so
 * the load is a burst of 50 connections in closed loop for part of every second. And on a connection the server
 * closes after a response (a retiring worker's `Connection: close`), autocannon has already written the next request
 * on it; that request's entry stays in its queue, so every later latency on the new connection is timed from the
 * request before it (up to the pause between two bursts): the restart's tail is overstated for seconds after it.
 */
async function autocannonLoad(url, onResponse, onError) {
  const load = autocannon({ url: `${url}/api/items`, connections: flags.connections, amount: flags.requests, overallRate: flags.rate })
  load.on('response', (_client, status, _bytes, ms) => onResponse(status, ms))
  load.on('reqError', onError)
  const r = await load
  return { total: r.requests.total, errors: r.errors, non2xx: r.non2xx }
}

/** Requests spread evenly over each second (open loop), on an undici pool that honours `Connection: close`. */
async function evenLoad(url, onResponse, onError) {
  const pool = new Pool(url, { connections: flags.connections, pipelining: 1, keepAliveTimeout: 60_000 })
  let total = 0
  let errors = 0
  let non2xx = 0
  const errorCodes = {}
  await pace(flags.rate, flags.requests, async () => {
    const t = performance.now()
    try {
      const res = await pool.request({ path: '/api/items', method: 'GET' })
      await res.body.dump()
      total++
      if (res.statusCode >= 300) non2xx++
      onResponse(res.statusCode, performance.now() - t)
    } catch (err) {
      errors++
      const code = err.code ?? err.name
      errorCodes[code] = (errorCodes[code] ?? 0) + 1
      onError(err)
    }
  })
  await pool.close()
  return { total, errors, non2xx, errorCodes }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
