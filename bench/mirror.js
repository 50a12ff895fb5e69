// Mirroring bench: the cost of shadow traffic on the live path. Two sluice processes in front of the
// same upstreams (blue serves users; green is the mirror version):
//   off   no mirroring,
//   on    mirroring 10% of requests to green, compare on (status, headers, body digest),
// driven by autocannon (a child process per target, bench/load-worker.js) in interleaved rounds
// (the order alternates), sticky x-user-id keys.
// Both versions answer the same body (a candidate that behaves), so copies take the common
// "match" path; --mismatch makes green answer differently (every copy a mismatch, the costliest
// path). Reports user-facing req/s, p99, and CPU per request of the sluice process; the target is
// on/off req/s >= 0.9, judged on the median of the per-round on/off ratios (the two arms of a round
// ran back to back, or at the same time with --proxy-cpu, so drift in the machine's speed cancels),
// and with --pairs on the median over the process pairs of those. All on 127.0.0.1, ephemeral ports.
// --pin puts each sluice on CPU 0 and the load generator and both upstreams on CPU 1 (taskset), so
// the shadow upstream's own work for the copies does not run on the proxy's core: on a 2-core box
// it otherwise preempts the proxy, a cost a real shadow on another host never puts on it.
// --proxy-cpu F caps each sluice at F of one CPU (a CFS quota in a cgroup of its own; Linux, root)
// and loads both at the same time in each round. With F = 0.3 the two proxies are the only
// bottlenecks (the generator and upstreams keep about a CPU to spare), so req/s measures each
// proxy's own capacity, and both arms see the same moment of a machine whose speed drifts by
// half within minutes. Without it every process shares the 2 cores, and req/s falls with the
// whole machine's work per request, the shadow upstream's answers to the copies included.
// --bare puts the bare undici pass-through (bench/bare-passthrough.js) in sluice's place, the
// "on" one also sending every (100/percent)th request to green, fire and forget: the floor of
// what a copy costs any Node proxy on undici, to judge sluice's own figure against.
// Each round also reports the CPU per user request of the upstreams and the load generator.
// --pin with --proxy-cpu: both capped proxies share CPU 0 (twice the cap of it) and everything else runs on
// CPU 1, so the two arms see the same core's speed and the shadow upstream never runs on a proxy's
// core, as a real shadow on another host would not.
// --pairs N repeats the whole measurement on N fresh off/on process pairs and reports the median of
// the pairs' ratios. One process keeps its speed for its whole life, and two identical sluice
// processes started together differed by up to 10% for all their rounds (JIT decisions, where the
// scheduler put them), so more rounds on one pair cannot average that away; more pairs can.
// --crossover (with --proxy-cpu, sluice only): both processes of a pair start alike and mirroring is
// switched through the admin API (PUT /v1/mirror), on in one process and off in the other, then the
// other way round; each round is the two windows, and its figure sqrt(on/off in window 1 x on/off
// in window 2). A process's own speed (one ran 12% faster than its twin for its whole life) then
// cancels out, and so does the machine's drift (both windows load both processes at once). In the
// first run the two pairs' medians were 0.92 and 0.92, where fresh off/on pairs spread 0.80-1.02.
// The price: an "off" window runs in a process that has mirrored, with whatever V8 compiled for it.
// --settle S (default 40): seconds of load on each fresh pair before its first round, so V8's
// compiling is over before anything is counted (a capped proxy gets only a fraction of those
// seconds of CPU).
//   npm run build && node bench/mirror.js --duration 8 --rounds 5 --connections 50 --percent 10 \
//     [--pin] [--proxy-cpu 0.3] [--pairs 8] [--settle 40] [--crossover] [--mismatch] [--bare]
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import {
  announce,
  cpuMs,
  limitCpu,
  machine,
  median,
  parseFlags,
  pin,
  startBlueGreen,
  startChild,
  until200,
  usageError,
} from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const flags = parseFlags(
  {
    duration: 8,
    rounds: 5,
    warmup: 1,
    settle: 40,
    connections: 50,
    keys: 1000,
    'body-bytes': 128,
    percent: 10,
    mismatch: false,
    pin: false,
    'proxy-cpu': 0,
    bare: false,
    pairs: 1,
    crossover: false,
  },
  'usage: npm run bench:mirror -- [--duration S] [--rounds N] [--warmup S] [--settle S] [--connections N] [--keys N] ' +
    '[--body-bytes N] [--percent P] [--pairs N] [--proxy-cpu F] [--pin] [--crossover] [--mismatch] [--bare]',
)
const opts = {
  duration: flags.duration,
  rounds: flags.rounds,
  warmup: flags.warmup,
  settle: flags.settle,
  connections: flags.connections,
  keys: flags.keys,
  bodyBytes: flags['body-bytes'],
  percent: flags.percent,
  mismatch: flags.mismatch,
  pin: flags.pin,
  proxyCpu: flags['proxy-cpu'],
  bare: flags.bare,
  pairs: flags.pairs,
  crossover: flags.crossover,
}
if (opts.crossover && (opts.bare || !(opts.proxyCpu > 0))) {
  usageError('--crossover needs --proxy-cpu (both processes loaded at once) and sluice (not --bare)')
}
if (!(opts.settle >= 0)) usageError('--settle must be a number of seconds >= 0')
for (const name of ['pairs', 'rounds']) {
  if (!Number.isInteger(opts[name]) || opts[name] < 1) usageError(`--${name} must be a whole number >= 1`)
}
const TOKEN = 'bench-token'
const execFileAsync = promisify(execFile)

const info = announce()
await mkdir(outDir, { recursive: true })
const children = []
const cgroups = []
const stopAll = async () => {
  await Promise.all(children.map((c) => c.stop()))
  for (const remove of cgroups.splice(0)) remove()
}
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const { upstream, blue, green } = await startBlueGreen(root, children, opts.bodyBytes, opts.mismatch ? [] : ['--same-body'])

  const runs = []
  /** Per fresh process pair: the median of its rounds' on/off ratios. */
  const pairRatios = []
  /** The same for CPU per user request: the copies' cost, whether or not the proxy was the bottleneck. */
  const pairCpuRatios = []
  const figures = []
  for (let pair = 0; pair < opts.pairs; pair++) {
    const targets = await startTargets(upstream, blue, green)
    try {
      // Fresh processes: compiled code and connection pools settled before anything is counted. Under
      // a CPU cap this takes far longer than it looks: at 0.3 CPU, 5 s of load gave each proxy 1.5 s
      // of CPU, and in the 15 s after 8 s of load V8's compiler threads still used 5% of the "off"
      // proxy's CPU and 6.5% of the "on" one's (more code to optimise); after 40 s, 4% each.
      await Promise.all(Object.values(targets).map((t) => load(t.url, Math.max(opts.warmup, opts.settle))))
      const pairRuns = opts.crossover
        ? await crossoverRounds(targets, upstream, pair, figures)
        : await offOnRounds(targets, upstream, pair)
      runs.push(...pairRuns)
      pairRatios.push(median(roundRatios(pairRuns)))
      pairCpuRatios.push(median(roundRatios(pairRuns, 'cpuUsPerReq')))
      if (!opts.bare && !opts.crossover) figures.push(await mirrorFigures(targets.on))
    } finally {
      await stopTargets(targets)
    }
  }

  const summary = {}
  for (const name of ['off', 'on']) {
    const mine = runs.filter((r) => r.target === name)
    summary[name] = {
      rps: median(mine.map((r) => r.rps)),
      p99: median(mine.map((r) => r.p99)),
      cpuUsPerReq: median(mine.map((r) => r.cpuUsPerReq ?? Number.NaN)),
      quotaUsed: median(mine.map((r) => r.quotaUsed ?? Number.NaN)),
      upstreamUsPerReq: median(mine.map((r) => r.upstreamUsPerReq ?? Number.NaN)),
      loadGenUsPerReq: median(mine.map((r) => r.loadGenUsPerReq)),
      failures: mine.reduce((n, r) => n + r.non2xx + r.errors, 0),
    }
  }
  const rounds = roundRatios(runs)
  const ratios = {
    rps: summary.on.rps / summary.off.rps,
    pairedRps: median(pairRatios),
    allRoundsRps: median(rounds),
    p99: summary.on.p99 / summary.off.p99,
    cpuPerReq: summary.on.cpuUsPerReq / summary.off.cpuUsPerReq,
    pairedCpuPerReq: median(pairCpuRatios),
  }
  const after = machine().loadavg
  await stopAll()
  const result = { machine: info, loadavgAfter: after, options: opts, runs, summary, ratios, roundRatios: rounds, pairRatios, pairCpuRatios, mirror: sumFigures(figures) }
  const file = join(outDir, `mirror-${info.date.replace(/[:.]/g, '-')}.json`)
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
  console.log(`\nresults: ${file}\n`)
  console.log(markdown(result))
} finally {
  await stopAll()
}

/**
 * Starts a fresh off/on pair (sluice, or the bare pass-through with --bare), capped or pinned as
 * the layout asks. Registered in `children` and `cgroups` so an interrupted run still cleans up.
 */
async function startTargets(upstream, blue, green) {
  const targets = {}
  for (const name of ['off', 'on']) {
    let child
    if (opts.bare) {
      const copies = name === 'on' ? ['--copy-to', green, '--copy-every', String(Math.round(100 / opts.percent))] : []
      child = startChild(`bare-${name}`, [join(root, 'bench/bare-passthrough.js'), blue, ...copies])
    } else {
      // Crossover: both start alike (mirroring on) and are switched per window.
      const mirror = name === 'on' || opts.crossover ? mirrorSettings() : undefined
      const file = join(outDir, `mirror-bench-${name}.json`)
      await writeFile(file, JSON.stringify(sluiceConfig(blue, green, mirror), null, 2))
      child = startChild(`sluice-${name}`, [join(root, 'dist/cli/main.js'), 'serve', '--config', file])
    }
    children.push(child)
    const ready = await child.ready
    targets[name] = { url: `http://127.0.0.1:${ready.port}`, admin: `http://127.0.0.1:${ready.adminPort}`, child }
  }
  for (const t of Object.values(targets)) await until200(t.url)
  if (opts.proxyCpu > 0) {
    for (const [name, t] of Object.entries(targets)) {
      const remove = limitCpu(t.child.proc.pid, opts.proxyCpu, `sluice-bench-${name}`)
      if (remove === undefined) throw new Error('--proxy-cpu: no CPU cgroup could be made (Linux and root needed)')
      t.removeCgroup = remove
      cgroups.push(remove)
    }
  }
  if (opts.pin) {
    const ok =
      Object.values(targets).every((t) => pin(t.child.proc.pid, '0')) &&
      pin(upstream.proc.pid, '1') &&
      // The load workers are spawned later from this process, so they inherit CPU 1.
      pin(process.pid, '1')
    if (!ok) throw new Error('--pin: taskset could not pin the processes (is util-linux installed, are there 2 CPUs?)')
  }
  return targets
}

async function stopTargets(targets) {
  for (const t of Object.values(targets)) {
    await t.child.stop()
    children.splice(children.indexOf(t.child), 1)
    if (t.removeCgroup) {
      t.removeCgroup()
      cgroups.splice(cgroups.indexOf(t.removeCgroup), 1)
    }
  }
}

/**
 * Loads the named targets at the same time for one round. The upstreams' and the load
 * generator's CPU are shared by the targets loaded together: counted per request of all of them.
 */
async function measure(targets, upstream, names) {
  const list = names.map((name) => targets[name])
  if (opts.warmup > 0) await Promise.all(list.map((t) => load(t.url, opts.warmup)))
  const before = list.map((t) => cpuMs(t.child.proc.pid))
  const upBefore = cpuMs(upstream.proc.pid)
  const results = await Promise.all(list.map((t) => load(t.url, opts.duration)))
  const all = results.reduce((n, r) => n + r.total, 0)
  const upstreamUsPerReq = perReq(upBefore, cpuMs(upstream.proc.pid), all)
  const loadGenUsPerReq = results.reduce((us, r) => us + r.cpuUs, 0) / all
  return results.map((r, i) => {
    const cpuUsPerReq = perReq(before[i], cpuMs(list[i].child.proc.pid), r.total)
    // How much of its CPU cap the proxy used: near 100% it was the bottleneck (req/s measures
    // its capacity); well below, the round was bound by latency elsewhere.
    const quotaUsed =
      opts.proxyCpu > 0 && cpuUsPerReq !== undefined ? (cpuUsPerReq * r.rps) / 1e6 / opts.proxyCpu : undefined
    return { target: names[i], ...r, cpuUsPerReq, quotaUsed, upstreamUsPerReq, loadGenUsPerReq }
  })
}

/** The rounds of one pair: the "off" and "on" processes loaded in turn, or at once under a quota. */
async function offOnRounds(targets, upstream, pair) {
  const runs = []
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? ['off', 'on'] : ['on', 'off']
    // Side by side under a quota: both arms see the same moment of a machine whose speed drifts.
    const batches = opts.proxyCpu > 0 ? [order] : order.map((name) => [name])
    for (const names of batches) {
      for (const r of await measure(targets, upstream, names)) {
        const run = { pair, round, window: 0, ...r }
        runs.push(run)
        logRound(pair, round, run, '')
      }
    }
  }
  return runs
}

/**
 * The rounds of one pair by crossover: two windows per round, mirroring on in one process and off
 * in the other, then the other way round (and which goes first alternates from round to round).
 * Runs are labelled by whether that process mirrored in that window; `process` says which it was.
 */
async function crossoverRounds(targets, upstream, pair, figures) {
  const runs = []
  for (let round = 0; round < opts.rounds; round++) {
    for (let window = 0; window < 2; window++) {
      const mirroring = (round + window) % 2 === 0 ? 'off' : 'on'
      for (const name of ['off', 'on']) await setMirror(targets[name], name === mirroring)
      for (const r of await measure(targets, upstream, ['off', 'on'])) {
        const run = { pair, round, window, process: r.target, ...r, target: r.target === mirroring ? 'on' : 'off' }
        runs.push(run)
        logRound(pair, round, run, ` (process ${r.target === 'off' ? 'A' : 'B'})`)
      }
      // Switching off ends a mirroring run (its figures with it): read them before.
      figures.push(await mirrorFigures(targets[mirroring]))
    }
  }
  return runs
}

/**
 * on/off of `figure` (req/s unless told) in each round, matched by process pair, round and window;
 * a crossover round's two windows give the geometric mean of their ratios.
 */
function roundRatios(runs, figure = 'rps') {
  const ratios = []
  for (const on of runs.filter((r) => r.target === 'on' && r.window === 0)) {
    let product = 1
    let windows = 0
    for (const on2 of runs.filter((r) => r.target === 'on' && r.pair === on.pair && r.round === on.round)) {
      const off = runs.find((r) => r.target === 'off' && r.pair === on.pair && r.round === on.round && r.window === on2.window)
      if (off === undefined || off[figure] === undefined || on2[figure] === undefined) continue
      product *= on2[figure] / off[figure]
      windows++
    }
    if (windows > 0) ratios.push(product ** (1 / windows))
  }
  return ratios
}

function logRound(pair, round, r, note) {
  console.log(
    `${opts.pairs > 1 ? `pair ${pair + 1}/${opts.pairs} ` : ''}` +
      `round ${round + 1}/${opts.rounds} mirror ${r.target.padEnd(3)} ${r.rps.toFixed(0).padStart(7)} req/s  ` +
      `p50 ${r.p50} ms  p99 ${r.p99} ms  CPU µs/req: proxy ${r.cpuUsPerReq?.toFixed(1) ?? 'n/a'} ` +
      `upstreams ${r.upstreamUsPerReq?.toFixed(1) ?? 'n/a'} load ${r.loadGenUsPerReq.toFixed(1)}` +
      (r.quotaUsed === undefined ? '' : `  quota used ${(r.quotaUsed * 100).toFixed(0)}%`) +
      (r.non2xx + r.errors > 0 ? `  non-2xx ${r.non2xx} errors ${r.errors}` : '') +
      note,
  )
}

async function mirrorFigures(target) {
  return (await (await fetch(`${target.admin}/v1/state`, { headers: auth() })).json()).mirror
}

/** What "mirroring on" means here: `percent` to green, x-upstream (which names the upstream) not compared. */
function mirrorSettings() {
  return { version: 'green', percent: opts.percent, ignore: ['x-upstream'] }
}

/** Crossover: mirroring on (the bench's settings) or off in one running sluice, through the admin API. */
async function setMirror(target, on) {
  const body = on ? mirrorSettings() : null
  const res = await fetch(`${target.admin}/v1/mirror`, {
    method: 'PUT',
    headers: { ...auth(), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  if (!res.ok) throw new Error(`PUT /v1/mirror on ${target.url}: ${res.status} ${await res.text()}`)
  await res.arrayBuffer()
}

/** The mirror figures of every "on" process, added up (p95s: the median of the processes'). */
function sumFigures(list) {
  if (list.length === 0) return undefined
  const total = (key) => list.reduce((n, f) => n + (f?.[key] ?? 0), 0)
  const mid = (key) => median(list.map((f) => f?.[key] ?? Number.NaN))
  return {
    copied: total('copied'),
    dropped: total('dropped'),
    errors: total('errors'),
    matched: total('matched'),
    mismatches: total('mismatches'),
    shadowP95Ms: mid('shadowP95Ms'),
    primaryP95Ms: mid('primaryP95Ms'),
  }
}

function layout(o) {
  if (o.proxyCpu > 0) {
    const where = o.pin ? 'both pinned to CPU 0, load generator and upstreams to CPU 1' : 'the rest unconstrained'
    return `, each proxy capped at ${o.proxyCpu} of a CPU (CFS quota) and both loaded at the same time, ${where}`
  }
  return o.pin ? ', sluice pinned to CPU 0, load generator and upstreams to CPU 1' : ', nothing pinned'
}

function perReq(beforeMs, afterMs, requests) {
  return beforeMs === undefined || afterMs === undefined ? undefined : ((afterMs - beforeMs) * 1000) / requests
}

function auth() {
  return { authorization: `Bearer ${TOKEN}` }
}

function sluiceConfig(blue, green, mirror) {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: TOKEN },
    versions: { blue: { instances: [{ url: blue }] }, green: { instances: [{ url: green }] } },
    weights: { blue: 100 },
    sticky: { keys: ['header:x-user-id'] },
    health: { path: '/healthz', intervalMs: 2000 },
    ...(mirror ? { mirror } : {}),
    log: { level: 'info' },
  }
}

/** One load run, from a child process of its own (bench/load-worker.js). */
async function load(url, seconds) {
  const options = { url, connections: opts.connections, pipelining: 1, duration: seconds, keys: opts.keys }
  const { stdout } = await execFileAsync(process.execPath, [join(root, 'bench/load-worker.js'), JSON.stringify(options)], {
    maxBuffer: 1 << 20,
  })
  return JSON.parse(stdout)
}

function markdown({ machine: m, loadavgAfter, options: o, summary, ratios, roundRatios: rounds, pairRatios, pairCpuRatios, mirror }) {
  const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')
  const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')
  const lines = [
    `### ${m.date.slice(0, 10)}: ${o.bare ? 'bare pass-through copying' : 'mirroring'} ${o.percent}%: ` +
      `${m.cpu}, ${m.cores} cores, Node ${m.node}`,
    '',
    `${o.pairs > 1 ? `${o.pairs} fresh process pairs, each ` : ''}${o.rounds} ${o.crossover ? 'crossover rounds (mirroring switched on in one process and off in the other, then the other way round) of 2 windows' : 'interleaved rounds'} x ${o.duration} s (after ${o.warmup} s warm-up each, and ${o.settle} s of load on each fresh process pair before its first), ${o.connections} connections, ` +
      `GET with a ${o.bodyBytes}-byte JSON answer, ${o.keys} distinct x-user-id keys, ` +
      `${o.bare ? 'copies fire and forget' : 'compare on'}, ` +
      `${o.mismatch ? 'green answering a different body (every copy a mismatch)' : 'both versions answering the same body'}` +
      `${layout(o)}. ` +
      `Load average before ${m.loadavg.join(' ')}, after ${loadavgAfter.join(' ')}.`,
    '',
    `| mirroring | req/s (median) | p99 ms | CPU µs/req: ${o.bare ? 'bare proxy' : 'sluice'} | upstreams | load generator | CPU cap used | non-2xx + errors |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...['off', 'on'].map((name) => {
      const s = summary[name]
      const label = name === 'off' ? 'off' : `${o.percent}% to green`
      const used = Number.isFinite(s.quotaUsed) ? `${(s.quotaUsed * 100).toFixed(0)}%` : 'n/a'
      return `| ${label} | ${s.rps.toFixed(0)} | ${s.p99} | ${f1(s.cpuUsPerReq)} | ${f1(s.upstreamUsPerReq)} | ${f1(s.loadGenUsPerReq)} | ${used} | ${s.failures} |`
    }),
    '',
    (o.pairs > 1
      ? `- on / off req/s, median over the process pairs of each pair's median round: ${f2(ratios.pairedRps)} ` +
        `(target >= 0.9: ${ratios.pairedRps >= 0.9 ? 'meets it' : 'below it'}; per pair ${pairRatios.map(f2).join(' ')}; ` +
        `median of all ${rounds.length} rounds ${f2(ratios.allRoundsRps)}; ratio of the medians ${f2(ratios.rps)}), `
      : `- on / off req/s, median of the per-round pairs: ${f2(ratios.pairedRps)} (target >= 0.9: ` +
        `${ratios.pairedRps >= 0.9 ? 'meets it' : 'below it'}; pairs ${rounds.map(f2).join(' ')}; ratio of the medians ${f2(ratios.rps)}), `) +
      `p99 ${f2(ratios.p99)}, CPU per request ${f2(ratios.cpuPerReq)} ` +
      `(paired like req/s: ${f2(ratios.pairedCpuPerReq)}; per pair ${pairCpuRatios.map(f2).join(' ')})`,
  ]
  if (mirror) {
    lines.push(
      `- mirror figures at the end: copied ${mirror.copied}, dropped ${mirror.dropped}, errors ${mirror.errors}, ` +
        `matched ${mirror.matched}, mismatches ${mirror.mismatches}, shadow p95 ${mirror.shadowP95Ms} ms, ` +
        `primary p95 ${mirror.primaryP95Ms} ms`,
    )
  }
  return lines.join('\n')
}
