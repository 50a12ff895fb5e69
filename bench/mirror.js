// Mirroring bench: the cost of shadow traffic on the live path. Two sluice processes in front of the
// same upstreams (blue serves users; green is the mirror version):
//   off   no mirroring,
//   on    mirroring 10% of requests to green, compare on (status, headers, body digest),
// driven by autocannon in interleaved rounds (the order alternates), sticky x-user-id keys.
// Both versions answer the same body (a candidate that behaves), so copies take the common
// "match" path; --mismatch makes green answer differently (every copy a mismatch, the costliest
// path). Reports user-facing req/s, p99, and CPU per request of the sluice process; the target is
// on/off req/s >= 0.9, judged on the median of the per-round on/off pairs (each pair ran back to
// back, so drift in the machine's load cancels). All on 127.0.0.1, ephemeral ports.
// --pin puts each sluice on CPU 0 and the load generator and both upstreams on CPU 1 (taskset), so
// the shadow upstream's own work for the copies does not run on the proxy's core: on a 2-core box
// it otherwise preempts the proxy, a cost a real shadow on another host never puts on it.
//   npm run build && node bench/mirror.js --duration 8 --rounds 5 --connections 50 --percent 10 [--pin]
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { announce, cpuMs, flag, hasFlag, machine, median, pin, startBlueGreen, startChild, until200 } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const args = process.argv.slice(2)
const opts = {
  duration: Number(flag(args, 'duration', '8')),
  rounds: Number(flag(args, 'rounds', '5')),
  warmup: Number(flag(args, 'warmup', '1')),
  connections: Number(flag(args, 'connections', '50')),
  keys: Number(flag(args, 'keys', '1000')),
  bodyBytes: Number(flag(args, 'body-bytes', '128')),
  percent: Number(flag(args, 'percent', '10')),
  mismatch: hasFlag(args, 'mismatch'),
  pin: hasFlag(args, 'pin'),
}
const TOKEN = 'bench-token'

const requests = Array.from({ length: opts.keys }, (_, i) => ({
  method: 'GET',
  path: '/api/items',
  headers: { 'x-user-id': `user-${(i * 7919) % 100_003}` },
}))

const info = announce()
await mkdir(outDir, { recursive: true })
const children = []
const stopAll = () => Promise.all(children.map((c) => c.stop()))
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const { blue, green } = await startBlueGreen(root, children, opts.bodyBytes, opts.mismatch ? [] : ['--same-body'])

  const targets = {}
  for (const name of ['off', 'on']) {
    const mirror = name === 'on' ? { version: 'green', percent: opts.percent, ignore: ['x-upstream'] } : undefined
    const file = join(outDir, `mirror-bench-${name}.json`)
    await writeFile(file, JSON.stringify(sluiceConfig(blue, green, mirror), null, 2))
    const child = startChild(`sluice-${name}`, [join(root, 'dist/cli/main.js'), 'serve', '--config', file])
    children.push(child)
    const ready = await child.ready
    targets[name] = { url: `http://127.0.0.1:${ready.port}`, admin: `http://127.0.0.1:${ready.adminPort}`, child }
  }
  for (const t of Object.values(targets)) await until200(t.url)
  if (opts.pin) {
    const ok =
      Object.values(targets).every((t) => pin(t.child.proc.pid, '0')) &&
      pin(children[0].proc.pid, '1') &&
      pin(process.pid, '1')
    if (!ok) throw new Error('--pin: taskset could not pin the processes (is util-linux installed, are there 2 CPUs?)')
  }

  const runs = []
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? ['off', 'on'] : ['on', 'off']
    for (const name of order) {
      const t = targets[name]
      if (opts.warmup > 0) await load(t.url, opts.warmup)
      const cpuBefore = cpuMs(t.child.proc.pid)
      const r = await load(t.url, opts.duration)
      const cpuAfter = cpuMs(t.child.proc.pid)
      const cpuUsPerReq =
        cpuBefore === undefined || cpuAfter === undefined ? undefined : ((cpuAfter - cpuBefore) * 1000) / r.total
      runs.push({ round, target: name, ...r, cpuUsPerReq })
      console.log(
        `round ${round + 1}/${opts.rounds} mirror ${name.padEnd(3)} ${r.rps.toFixed(0).padStart(7)} req/s  ` +
          `p50 ${r.p50} ms  p99 ${r.p99} ms  CPU ${cpuUsPerReq?.toFixed(1) ?? 'n/a'} µs/req` +
          (r.non2xx + r.errors > 0 ? `  non-2xx ${r.non2xx} errors ${r.errors}` : ''),
      )
    }
  }
  const mirrorState = await (await fetch(`${targets.on.admin}/v1/state`, { headers: auth() })).json()
  const summary = {}
  for (const name of ['off', 'on']) {
    const mine = runs.filter((r) => r.target === name)
    summary[name] = {
      rps: median(mine.map((r) => r.rps)),
      p99: median(mine.map((r) => r.p99)),
      cpuUsPerReq: median(mine.map((r) => r.cpuUsPerReq ?? Number.NaN)),
      failures: mine.reduce((n, r) => n + r.non2xx + r.errors, 0),
    }
  }
  const pairs = []
  for (let round = 0; round < opts.rounds; round++) {
    const on = runs.find((r) => r.round === round && r.target === 'on')
    const off = runs.find((r) => r.round === round && r.target === 'off')
    pairs.push(on.rps / off.rps)
  }
  const ratios = {
    rps: summary.on.rps / summary.off.rps,
    pairedRps: median(pairs),
    p99: summary.on.p99 / summary.off.p99,
    cpuPerReq: summary.on.cpuUsPerReq / summary.off.cpuUsPerReq,
  }
  const after = machine().loadavg
  await stopAll()
  const result = { machine: info, loadavgAfter: after, options: opts, runs, summary, ratios, pairs, mirror: mirrorState.mirror }
  const file = join(outDir, `mirror-${info.date.replace(/[:.]/g, '-')}.json`)
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
  console.log(`\nresults: ${file}\n`)
  console.log(markdown(result))
} finally {
  await stopAll()
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

async function load(url, seconds) {
  const r = await autocannon({ url, connections: opts.connections, pipelining: 1, duration: seconds, requests })
  return {
    rps: r.requests.total / r.duration,
    total: r.requests.total,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  }
}

function markdown({ machine: m, loadavgAfter, options: o, summary, ratios, pairs, mirror }) {
  const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')
  const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')
  const lines = [
    `### ${m.date.slice(0, 10)}: mirroring ${o.percent}%: ${m.cpu}, ${m.cores} cores, Node ${m.node}`,
    '',
    `${o.rounds} interleaved rounds x ${o.duration} s (after ${o.warmup} s warm-up each), ${o.connections} connections, ` +
      `GET with a ${o.bodyBytes}-byte JSON answer, ${o.keys} distinct x-user-id keys, compare on, ` +
      `${o.mismatch ? 'green answering a different body (every copy a mismatch)' : 'both versions answering the same body'}` +
      `${o.pin ? ', sluice pinned to CPU 0, load generator and upstreams to CPU 1' : ', nothing pinned'}. ` +
      `Load average before ${m.loadavg.join(' ')}, after ${loadavgAfter.join(' ')}.`,
    '',
    '| mirroring | req/s (median) | p99 ms | CPU µs/req (sluice) | non-2xx + errors |',
    '| --- | ---: | ---: | ---: | ---: |',
    `| off | ${summary.off.rps.toFixed(0)} | ${summary.off.p99} | ${f1(summary.off.cpuUsPerReq)} | ${summary.off.failures} |`,
    `| ${o.percent}% to green | ${summary.on.rps.toFixed(0)} | ${summary.on.p99} | ${f1(summary.on.cpuUsPerReq)} | ${summary.on.failures} |`,
    '',
    `- on / off req/s, median of the per-round pairs: ${f2(ratios.pairedRps)} (target >= 0.9: ` +
      `${ratios.pairedRps >= 0.9 ? 'meets it' : 'below it'}; pairs ${pairs.map(f2).join(' ')}; ratio of the medians ${f2(ratios.rps)}), ` +
      `p99 ${f2(ratios.p99)}, CPU per request ${f2(ratios.cpuPerReq)}`,
    `- mirror figures at the end: copied ${mirror?.copied}, dropped ${mirror?.dropped}, errors ${mirror?.errors}, ` +
      `matched ${mirror?.matched}, mismatches ${mirror?.mismatches}, shadow p95 ${mirror?.shadowP95Ms} ms, ` +
      `primary p95 ${mirror?.primaryP95Ms} ms`,
  ]
  return lines.join('\n')
}
