// End-to-end proxy bench (README, Development): autocannon against
//   upstream   the upstream directly (the ceiling),
//   bare       a bare undici pass-through (bench/bare-passthrough.js, the floor any Node proxy pays),
//   sluice     sluice, blue/green 90/10, sticky on x-user-id with a spread of keys,
//   keyless    the same sluice process, requests without a sticky key,
// in interleaved rounds (the order rotates each round), reporting medians and ratios.
// Every target runs in its own process; autocannon runs here. All on 127.0.0.1, ephemeral ports.
//   npm run bench -- --duration 5 --rounds 5 --connections 50
// Other flags: --warmup S, --keys N, --body-bytes N, --targets upstream,bare,sluice,keyless,
// --instances N (upstream instances behind sluice, half blue and half green, all in one process; default 2);
//   a list such as 2,200 starts one sluice per count in front of the same upstream process and runs
//   sluice@2, sluice@200 (and keyless@N) in the same interleaved rounds, with the ratios to the first count
//   and, per round, sluice's 200/2 over the bare pass-through's 200/2 (what sluice adds beyond the floor there),
// --probe-ms MS (sluice's health.intervalMs, default 2000; probes reuse one kept-alive connection per instance,
// and a longer interval isolates the routing cost further),
// --cpu-prof (profile the bare and sluice processes; top functions printed, .cpuprofile kept in bench/out/prof/).
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import {
  announce,
  cpuMs,
  machine,
  median,
  parseFlags,
  startBlueGreen,
  startChild,
  stickyRequests,
  until200,
  usageError,
} from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const flags = parseFlags(
  {
    duration: 5,
    rounds: 5,
    warmup: 1,
    connections: 50,
    keys: 1000,
    'body-bytes': 128,
    targets: 'upstream,bare,sluice,keyless',
    'cpu-prof': false,
    instances: '2',
    'probe-ms': 2000,
  },
  'usage: npm run bench -- [--duration S] [--rounds N] [--warmup S] [--connections N] [--keys N] [--body-bytes N] ' +
    '[--targets upstream,bare,sluice,keyless] [--instances N[,N...]] [--probe-ms MS] [--cpu-prof]',
)
const opts = {
  duration: flags.duration,
  rounds: flags.rounds,
  warmup: flags.warmup,
  connections: flags.connections,
  pipelining: 1,
  keys: flags.keys,
  bodyBytes: flags['body-bytes'],
  targets: flags.targets.split(','),
  cpuProf: flags['cpu-prof'],
  instances: flags.instances.split(',').map(Number),
  probeMs: flags['probe-ms'],
}

const LABELS = {
  upstream: 'upstream direct',
  bare: 'bare undici pass-through',
  sluice: 'sluice 90/10, sticky x-user-id',
  keyless: 'sluice 90/10, no sticky key',
}
for (const t of opts.targets) if (!(t in LABELS)) usageError(`unknown target "${t}" (known: ${Object.keys(LABELS)})`)
if (!opts.instances.every((n) => Number.isInteger(n) && n >= 2)) usageError('--instances wants whole numbers >= 2, comma-separated')
// With several instance counts, each sluice target runs once per count: sluice@2, sluice@200, ...
const COUNTS = opts.instances
const MULTI = COUNTS.length > 1
const TARGETS = MULTI
  ? opts.targets.flatMap((t) => (t === 'upstream' ? [t] : COUNTS.map((n) => `${t}@${n}`)))
  : opts.targets
const baseOf = (t) => t.split('@')[0]
const label = (t) => LABELS[baseOf(t)] + (t.includes('@') ? `, ${t.split('@')[1]} instances` : '')

const keyed = stickyRequests(opts.keys)
const keyless = [{ method: 'GET', path: '/api/items' }]

const info = announce()

await mkdir(outDir, { recursive: true })
const children = []
const stopAll = () => Promise.all(children.map((c) => c.stop()))
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const { upstream, sets } = await startUpstreams(COUNTS)
  const blueUrl = sets[0].blue[0]

  const profDir = join(outDir, 'prof', info.date.replace(/[:.]/g, '-'))
  const profiled = (name) => (opts.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(profDir, name)] : [])
  // With several counts, bare@N spreads its requests at random over the N instances: the floor at N.
  const bares = (MULTI ? sets : [{ blue: [blueUrl], green: [] }]).map((set, i) => {
    const name = MULTI ? `bare-${COUNTS[i]}` : 'bare'
    const proc = startChild(name, [join(root, 'bench/bare-passthrough.js'), ...set.blue, ...set.green], {
      execArgv: profiled(name),
    })
    children.push(proc)
    return proc
  })

  const proxies = []
  for (const [i, set] of sets.entries()) {
    const name = MULTI ? `sluice-${COUNTS[i]}` : 'sluice'
    const configPath = join(outDir, `${name}-bench.json`)
    await writeFile(configPath, JSON.stringify(sluiceConfig(set.blue, set.green), null, 2))
    const proc = startChild(name, [join(root, 'dist/cli/main.js'), 'serve', '--config', configPath], {
      execArgv: profiled(name),
    })
    children.push(proc)
    proxies.push(proc)
  }

  const urls = { upstream: blueUrl }
  // Whose CPU a target's run is charged to: the proxy in front, or the upstream itself.
  const pids = { upstream: upstream.proc.pid }
  for (const [i, proc] of bares.entries()) {
    const key = MULTI ? `bare@${COUNTS[i]}` : 'bare'
    urls[key] = `http://127.0.0.1:${(await proc.ready).port}`
    pids[key] = proc.proc.pid
  }
  let split
  for (const [i, proc] of proxies.entries()) {
    const url = `http://127.0.0.1:${(await proc.ready).port}`
    split = await checkSplit(url)
    console.log(
      `sluice${MULTI ? `@${COUNTS[i]}` : ''} ready: green share over ${split.total} distinct keys ${(split.green * 100).toFixed(1)}% (want ~10%)`,
    )
    for (const t of ['sluice', 'keyless']) {
      const key = MULTI ? `${t}@${COUNTS[i]}` : t
      urls[key] = url
      pids[key] = proc.proc.pid
    }
  }
  const runs = []
  for (let round = 0; round < opts.rounds; round++) {
    const order = TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length])
    for (const target of order) {
      const requests = baseOf(target) === 'keyless' ? keyless : keyed
      if (opts.warmup > 0) await load(urls[target], requests, opts.warmup)
      const cpuBefore = cpuMs(pids[target])
      const r = await load(urls[target], requests, opts.duration)
      const cpuAfter = cpuMs(pids[target])
      const total = r.rps * r.seconds
      r.cpuUsPerReq =
        cpuBefore === undefined || cpuAfter === undefined ? undefined : ((cpuAfter - cpuBefore) * 1000) / total
      runs.push({ round, target, ...r })
      console.log(
        `round ${round + 1}/${opts.rounds} ${target.padEnd(12)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50} ms  p99 ${r.p99} ms  cpu ${r.cpuUsPerReq?.toFixed(0)} us/req` +
          (r.non2xx + r.errors > 0 ? `  non-2xx ${r.non2xx} errors ${r.errors}` : ''),
      )
    }
  }

  const summary = {}
  for (const t of TARGETS) {
    const mine = runs.filter((r) => r.target === t)
    summary[t] = {
      rps: median(mine.map((r) => r.rps)),
      rpsMin: Math.min(...mine.map((r) => r.rps)),
      rpsMax: Math.max(...mine.map((r) => r.rps)),
      p50: median(mine.map((r) => r.p50)),
      p99: median(mine.map((r) => r.p99)),
      cpuUsPerReq: mine[0]?.cpuUsPerReq === undefined ? undefined : median(mine.map((r) => r.cpuUsPerReq)),
      non2xx: mine.reduce((n, r) => n + r.non2xx, 0),
      errors: mine.reduce((n, r) => n + r.errors, 0),
    }
  }
  const ratios = ratiosOf(summary, runs)
  const after = machine().loadavg
  await stopAll()
  const profile = {}
  if (opts.cpuProf) {
    for (const name of MULTI ? COUNTS.flatMap((n) => [`bare-${n}`, `sluice-${n}`]) : ['bare', 'sluice'])
      profile[name] = await topFunctions(join(profDir, name))
  }

  const result = { machine: info, loadavgAfter: after, options: opts, split, runs, summary, ratios, profile }
  const file = join(outDir, `proxy-${info.date.replace(/[:.]/g, '-')}.json`)
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
  console.log(`\nresults: ${file}\n`)
  console.log(markdown(result))
  for (const [name, p] of Object.entries(profile)) {
    if (p === undefined) continue
    console.log(
      `\n${name} process (${p.file}): busy ${(p.busyShare * 100).toFixed(0)}% of its samples; self time by origin:`,
    )
    for (const o of p.origins) console.log(`${o.pct.toFixed(1).padStart(5)}%  ${o.origin}`)
    console.log('top functions by self time:')
    for (const f of p.top) console.log(`${f.pct.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`)
  }
} finally {
  await stopAll()
}

/**
 * The upstream instances, all in one process: blue and green (one count of 2), or per count N servers
 * blue-N-i and green-N-i (half each), so every sluice target is in front of the same upstream process.
 */
async function startUpstreams(counts) {
  if (counts.length === 1 && counts[0] === 2) {
    const { upstream, blue, green } = await startBlueGreen(root, children, opts.bodyBytes)
    return { upstream, sets: [{ blue: [blue], green: [green] }] }
  }
  const namesOf = (n) => Array.from({ length: n }, (_, i) => (i < n - (n >> 1) ? `blue-${n}-${i}` : `green-${n}-${i}`))
  const names = counts.flatMap(namesOf)
  const upstream = startChild('upstream', [join(root, 'bench/upstream.js'), ...names, '--body-bytes', `${opts.bodyBytes}`])
  children.push(upstream)
  const { ports } = await upstream.ready
  const sets = counts.map((n) => {
    const urls = (prefix) => namesOf(n).filter((x) => x.startsWith(prefix)).map((x) => `http://127.0.0.1:${ports[x]}`)
    return { blue: urls('blue'), green: urls('green') }
  })
  return { upstream, sets }
}

function sluiceConfig(blue, green) {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: 'bench-token' },
    versions: {
      blue: { instances: blue.map((url) => ({ url })) },
      green: { instances: green.map((url) => ({ url })) },
    },
    weights: { blue: 90, green: 10 },
    sticky: { keys: ['header:x-user-id'] },
    // Probes on, as in a real deployment; their cost is noise next to the load.
    health: { path: '/healthz', intervalMs: opts.probeMs },
    log: { level: 'info' },
  }
}

/** Waits until sluice routes to both versions and measures the split over distinct keys. */
async function checkSplit(url) {
  await until200(url)
  let green = 0
  const total = 1000
  for (let i = 0; i < total; i++) {
    const res = await fetch(url, { headers: { 'x-user-id': `split-${i}` } })
    await res.arrayBuffer()
    if (res.headers.get('x-upstream')?.startsWith('green')) green++
  }
  return { total, green: green / total }
}

/**
 * Each connection starts at its own random place in the request list: all
 * starting at the first would walk the sticky keys in step, so the 50
 * connections would hit one instance at once (at 200 instances, a burst of
 * pool connections that idle out and reconnect: 15% of requests opened one).
 */
function startAtRandomRequest(client) {
  const it = client.requestIterator
  const i = Math.floor(Math.random() * it.requests.length)
  it.currentRequestIndex = i
  it.currentRequest = it.requests[i]
}

async function load(url, requests, seconds) {
  const r = await autocannon({
    url,
    connections: opts.connections,
    pipelining: opts.pipelining,
    duration: seconds,
    requests,
    setupClient: startAtRandomRequest,
  })
  return {
    seconds: r.duration,
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  }
}

/**
 * Ratios of the medians, and the median of per-round ratios (targets run
 * back to back in a round see similar background load, so pairing them
 * cancels part of the noise of a shared machine).
 */
function ratiosOf(s, runs) {
  const ratio = (a, b, k) => (s[a]?.[k] !== undefined && s[b]?.[k] !== undefined ? s[a][k] / s[b][k] : undefined)
  const paired = (a, b, k) => {
    const per = []
    for (const ra of runs) {
      if (ra.target !== a) continue
      const rb = runs.find((r) => r.target === b && r.round === ra.round)
      if (rb !== undefined && ra[k] !== undefined && rb[k] !== undefined) per.push(ra[k] / rb[k])
    }
    return per.length > 0 ? median(per) : undefined
  }
  const out = {}
  // With several instance counts, "sluice" in the ratios to bare is the first count's.
  const first = (t) => (MULTI ? `${t}@${COUNTS[0]}` : t)
  const pairs = [
    ['sluiceOverBare', first('sluice'), first('bare')],
    ['keylessOverBare', first('keyless'), first('bare')],
    ['sluiceOverUpstream', first('sluice'), 'upstream'],
    ['bareOverUpstream', first('bare'), 'upstream'],
  ]
  if (MULTI) {
    for (const n of COUNTS.slice(1)) {
      pairs.push([`bare${n}OverBare${COUNTS[0]}`, `bare@${n}`, first('bare')])
      pairs.push([`sluice${n}OverSluice${COUNTS[0]}`, `sluice@${n}`, first('sluice')])
      pairs.push([`keyless${n}OverKeyless${COUNTS[0]}`, `keyless@${n}`, first('keyless')])
    }
  }
  // What sluice adds at N instances beyond what the floor pays there: per round, (sluice@N / sluice@first) over
  // (bare@N / bare@first), so the upstream's own cost of N servers and the machine's drift cancel.
  const beyondFloor = (t, n, k) => {
    const at = (target, round) => runs.find((r) => r.target === target && r.round === round)?.[k]
    const per = []
    for (const { round } of runs.filter((r) => r.target === `${t}@${n}`)) {
      const v = [at(`${t}@${n}`, round), at(first(t), round), at(`bare@${n}`, round), at(first('bare'), round)]
      if (v.every((x) => x !== undefined)) per.push(v[0] / v[1] / (v[2] / v[3]))
    }
    return per.length > 0 ? median(per) : undefined
  }
  if (MULTI) {
    for (const n of COUNTS.slice(1)) {
      for (const t of ['sluice', 'keyless']) out[`${t}${n}BeyondFloor`] = { rps: beyondFloor(t, n, 'rps'), cpuUsPerReq: beyondFloor(t, n, 'cpuUsPerReq') }
    }
  }
  for (const [name, a, b] of pairs) {
    out[name] = {
      rps: ratio(a, b, 'rps'),
      p99: ratio(a, b, 'p99'),
      cpuUsPerReq: ratio(a, b, 'cpuUsPerReq'),
      pairedRps: paired(a, b, 'rps'),
      pairedP99: paired(a, b, 'p99'),
      pairedCpuUsPerReq: paired(a, b, 'cpuUsPerReq'),
    }
  }
  return out
}

function markdown({ machine: m, loadavgAfter, options: o, summary, ratios, split }) {
  const f2 = (x) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(2))
  const f0 = (x) => (x === undefined ? 'n/a' : x.toFixed(0))
  const lines = [
    `### ${m.date.slice(0, 10)}: ${m.cpu}, ${m.cores} cores, Node ${m.node}`,
    '',
    `${o.rounds} interleaved rounds x ${o.duration} s (after ${o.warmup} s warm-up each), ${o.connections} connections, ` +
      `pipelining ${o.pipelining}, GET with a ${o.bodyBytes}-byte JSON answer, ${o.keys} distinct x-user-id keys, ` +
      `${o.instances.join(' and ')} upstream instances probed every ${o.probeMs} ms; ` +
      `green share measured ${(split.green * 100).toFixed(1)}%. Load average before ${m.loadavg.join(' ')}, after ${loadavgAfter.join(' ')}.`,
    '',
    '| target | req/s (median) | req/s (min-max) | p50 ms | p99 ms | CPU us/req | non-2xx + errors | req/s vs bare | p99 vs bare |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  const bare = summary[MULTI ? `bare@${COUNTS[0]}` : 'bare']
  for (const [t, s] of Object.entries(summary)) {
    lines.push(
      `| ${label(t)} | ${f0(s.rps)} | ${f0(s.rpsMin)}-${f0(s.rpsMax)} | ${s.p50} | ${s.p99} | ${f0(s.cpuUsPerReq)} | ` +
        `${s.non2xx + s.errors} | ${bare ? f2(s.rps / bare.rps) : 'n/a'} | ${bare ? f2(s.p99 / bare.p99) : 'n/a'} |`,
    )
  }
  const sb = ratios.sluiceOverBare
  const verdict =
    sb.rps === undefined ? '' : sb.rps >= 0.85 && sb.p99 <= 1.3 ? ': meets the target' : ': below the target'
  lines.push(
    '',
    'CPU us/req is the CPU time of the process in front of the load generator (the upstream for "upstream direct", else the proxy) per request.',
    '',
    `- sluice / bare: req/s ${f2(sb.rps)} (target >= 0.85), p99 ${f2(sb.p99)} (target <= 1.3)${verdict}; ` +
      `per-round pairs: req/s ${f2(sb.pairedRps)}, p99 ${f2(sb.pairedP99)}; CPU per request ${f2(sb.cpuUsPerReq)}`,
    `- sluice without a sticky key / bare: req/s ${f2(ratios.keylessOverBare.rps)}, p99 ${f2(ratios.keylessOverBare.p99)}; ` +
      `per-round pairs: req/s ${f2(ratios.keylessOverBare.pairedRps)}; CPU per request ${f2(ratios.keylessOverBare.cpuUsPerReq)}`,
    `- sluice / upstream: req/s ${f2(ratios.sluiceOverUpstream.rps)}; bare / upstream: req/s ${f2(ratios.bareOverUpstream.rps)}`,
  )
  for (const n of COUNTS.slice(1)) {
    for (const t of ['bare', 'sluice', 'keyless']) {
      const r = ratios[`${t}${n}Over${t[0].toUpperCase()}${t.slice(1)}${COUNTS[0]}`]
      if (r?.rps === undefined) continue
      const own = ratios[`${t}${n}BeyondFloor`]
      lines.push(
        `- ${t} at ${n} / at ${COUNTS[0]} instances: req/s ${f2(r.rps)} (target >= 0.95), per-round pairs ${f2(r.pairedRps)}; ` +
          `CPU per request ${f2(r.cpuUsPerReq)}, per-round pairs ${f2(r.pairedCpuUsPerReq)}; p99 ${f2(r.p99)}` +
          (own?.rps === undefined
            ? ''
            : `; over the bare pass-through's own ${n}/${COUNTS[0]} (per round): req/s ${f2(own.rps)}, CPU per request ${f2(own.cpuUsPerReq)}`),
      )
    }
  }
  return lines.join('\n')
}

/**
 * Self time per function and per origin (sluice's own files, each package,
 * node internals, native) from the newest .cpuprofile in dir, as shares of
 * the busy samples: idle time (start-up, pauses between runs) is left out.
 */
async function topFunctions(dir) {
  const files = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.cpuprofile')).sort()
  const file = files.at(-1)
  if (file === undefined) return undefined
  const prof = JSON.parse(await readFile(join(dir, file), 'utf8'))
  const self = new Map()
  const origins = new Map()
  let busy = 0
  let idle = 0
  for (const node of prof.nodes) {
    const hits = node.hitCount ?? 0
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') {
      idle += hits
      continue
    }
    busy += hits
    const where = url.replace(`file://${root}/`, '')
    const key = `${functionName || '(anonymous)'}\t${where}:${lineNumber + 1}`
    self.set(key, (self.get(key) ?? 0) + hits)
    const origin = where.startsWith('dist/')
      ? where
      : where.startsWith('node_modules/')
        ? where
            .split('/')
            .slice(0, where.startsWith('node_modules/@') ? 3 : 2)
            .join('/')
        : where.startsWith('node:')
          ? 'node internals (JS)'
          : `native/VM ${functionName}`
    origins.set(origin, (origins.get(origin) ?? 0) + hits)
  }
  const share = (entries, n) =>
    [...entries]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([key, hits]) => ({ key, pct: (hits / busy) * 100 }))
  return {
    file: join(dir, file),
    busyShare: busy / (busy + idle),
    top: share(self.entries(), 30).map(({ key, pct }) => {
      const [name, where] = key.split('\t')
      return { name, where, pct }
    }),
    origins: share(origins.entries(), 25).map(({ key, pct }) => ({ origin: key, pct })),
  }
}
