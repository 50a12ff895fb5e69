// TLS and HTTP/2 at the edge (README "TLS and HTTP/2"), in interleaved rounds, one upstream (bench/upstream.js):
//   https  HTTP/1.1 keep-alive over TLS (autocannon, ALPN http/1.1), against
//          bare-tls      a bare node:https server + undici pass-through (bench/bare-passthrough.js --tls-cert),
//          sluice-https  sluice with listen.tls, http2 off (a node:https server),
//          sluice-h2tls  sluice with listen.tls and http2 on (node:http2 createSecureServer, HTTP/1.1 by ALPN),
//          nginx-tls     nginx 1.22 with an ssl listener (bench/edge-peers.js), one worker;
//   h2     HTTP/2 over TLS with h2load (-c 50 -m 10: 50 connections, 10 streams each), against
//          sluice-h2tls and nginx-h2 (ssl http2);
//   plain  the HTTP/1.1 cleartext path (autocannon): bare, sluice (this build), and with --ref-dist DIR
//          sluice-ref, another build's dist/ (e.g. the commit before TLS), to show that path is unchanged.
// Every proxy is one process; figures are medians over rounds, ratios are medians of per-round pairs, and
// "per proxy core" divides the requests by the proxy process's own CPU seconds (from /proc).
//   flock /tmp/sluice-heavy.lock timeout 900 node bench/tls.js --mode https,h2 --rounds 5 --duration 5
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import autocannon from 'autocannon'
import { startNginx, versionOf, NGINX } from './edge-peers.js'
import { announce, cpuMs, machine, median, parseFlags, startChild, usageError } from './lib.js'

const run = promisify(execFile)
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const flags = parseFlags(
  {
    mode: 'https,h2,plain',
    duration: 5,
    rounds: 5,
    warmup: 1,
    connections: 50,
    'body-bytes': 128,
    'h2-clients': 50,
    'h2-streams': 10,
    'ref-dist': '',
  },
  'usage: node bench/tls.js [--mode https,h2,plain] [--duration S] [--rounds N] [--warmup S] [--connections N] ' +
    '[--body-bytes N] [--h2-clients N] [--h2-streams N] [--ref-dist DIR]',
)
const modes = flags.mode.split(',')
for (const m of modes) if (!['https', 'h2', 'plain'].includes(m)) usageError(`unknown mode "${m}" (https, h2, plain)`)

const info = announce()
console.log(`${versionOf(NGINX)}; ${(await run('h2load', ['--version'])).stdout.trim()}`)
const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-tls-'))
const children = []
const stopAll = () => Promise.all(children.map((c) => c.stop()))
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const tls = await selfSigned(dir)
  const upstream = startChild('upstream', [join(root, 'bench/upstream.js'), 'app', '--body-bytes', `${flags['body-bytes']}`])
  children.push(upstream)
  const app = `http://127.0.0.1:${(await upstream.ready).ports.app}`

  /** name -> { url, pid } */
  const targets = {}
  const need = new Set(
    modes.flatMap((m) =>
      m === 'https'
        ? ['bare-tls', 'sluice-https', 'sluice-h2tls', 'nginx-tls']
        : m === 'h2'
          ? ['sluice-h2tls', 'nginx-h2']
          : ['bare', 'sluice', ...(flags['ref-dist'] ? ['sluice-ref'] : [])],
    ),
  )
  for (const name of need) targets[name] = await startTarget(name, app, tls)

  const report = { machine: info, options: flags, modes: {} }
  if (modes.includes('https'))
    report.modes.https = await rounds('https', ['bare-tls', 'sluice-https', 'sluice-h2tls', 'nginx-tls'], targets, loadH1)
  if (modes.includes('h2')) report.modes.h2 = await rounds('h2', ['sluice-h2tls', 'nginx-h2'], targets, loadH2)
  if (modes.includes('plain'))
    report.modes.plain = await rounds('plain', ['bare', 'sluice', ...(flags['ref-dist'] ? ['sluice-ref'] : [])], targets, loadH1)
  report.loadavgAfter = machine().loadavg
  console.log(`\nload average after: ${report.loadavgAfter.join(' ')}\n`)
  console.log(markdown(report))
} finally {
  await stopAll()
  rmSync(dir, { recursive: true, force: true })
}

/** A self-signed EC certificate for 127.0.0.1 made with openssl (clients here do not verify). */
async function selfSigned(d) {
  const cert = join(d, 'bench.crt')
  const key = join(d, 'bench.key')
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ])
  return { cert, key }
}

async function startTarget(name, app, tls) {
  if (name === 'nginx-tls' || name === 'nginx-h2') {
    const n = await startNginx(app, { tls, http2: name === 'nginx-h2' })
    children.push(n)
    await n.ready
    return { url: n.url, pid: n.pid }
  }
  if (name === 'bare' || name === 'bare-tls') {
    const args = [join(root, 'bench/bare-passthrough.js'), app, ...(name === 'bare-tls' ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : [])]
    const c = startChild(name, args)
    children.push(c)
    return { url: `${name === 'bare' ? 'http' : 'https'}://127.0.0.1:${(await c.ready).port}`, pid: c.proc.pid }
  }
  const listen = { host: '127.0.0.1', port: 0 }
  if (name === 'sluice-https') Object.assign(listen, { tls })
  if (name === 'sluice-h2tls') Object.assign(listen, { tls, http2: true })
  const configFile = join(dir, `${name}.json`)
  writeFileSync(
    configFile,
    JSON.stringify({
      listen,
      admin: { host: '127.0.0.1', port: 0, token: 'bench-token' },
      versions: { app: { instances: [{ url: app }] } },
      log: { level: 'info' },
    }),
  )
  const dist = name === 'sluice-ref' ? flags['ref-dist'] : join(root, 'dist')
  const c = startChild(name, [join(dist, 'cli/main.js'), 'serve', '--config', configFile])
  children.push(c)
  return { url: `${listen.tls ? 'https' : 'http'}://127.0.0.1:${(await c.ready).port}`, pid: c.proc.pid }
}

/** Interleaved rounds over `names` (the order rotates each round); each run's CPU is the proxy's own. */
async function rounds(mode, names, targets, load) {
  const runs = []
  for (let round = 0; round < flags.rounds; round++) {
    for (const name of names.map((_, i) => names[(i + round) % names.length])) {
      const { url, pid } = targets[name]
      if (flags.warmup > 0 && load === loadH1) await load(url, flags.warmup)
      const before = cpuMs(pid)
      const r = await load(url, flags.duration)
      const cpu = (cpuMs(pid) - before) / 1000
      r.perCore = cpu > 0 ? r.requests / cpu : undefined
      runs.push({ round, name, ...r })
      console.log(
        `${mode} round ${round + 1}/${flags.rounds} ${name.padEnd(13)} ${r.rps.toFixed(0).padStart(7)} req/s  ` +
          `${r.perCore?.toFixed(0).padStart(7)} req per proxy CPU-s  p50 ${r.p50} ms  p99 ${r.p99} ms` +
          (r.failed > 0 ? `  failed ${r.failed}` : ''),
      )
    }
  }
  const summary = {}
  for (const name of names) {
    const mine = runs.filter((r) => r.name === name)
    summary[name] = {
      rps: median(mine.map((r) => r.rps)),
      perCore: median(mine.map((r) => r.perCore)),
      p50: median(mine.map((r) => r.p50)),
      p99: median(mine.map((r) => r.p99)),
      failed: mine.reduce((n, r) => n + r.failed, 0),
    }
  }
  /** Median over rounds of a/b, for req/s and per proxy core. */
  const paired = (a, b, k) => {
    const per = []
    for (const ra of runs.filter((r) => r.name === a)) {
      const rb = runs.find((r) => r.name === b && r.round === ra.round)
      if (rb?.[k] && ra[k]) per.push(ra[k] / rb[k])
    }
    return per.length > 0 ? median(per) : undefined
  }
  return { names, runs, summary, paired }
}

/** HTTP/1.1 keep-alive with autocannon; TLS with ALPN http/1.1, as HTTP/1.1 clients of an h2 server offer. */
async function loadH1(url, seconds) {
  const r = await autocannon({
    url: `${url}/api/items`,
    connections: flags.connections,
    duration: seconds,
    tlsOptions: { ALPNProtocols: ['http/1.1'] },
  })
  return {
    requests: r.requests.total,
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    failed: r.non2xx + r.errors + r.timeouts,
  }
}

/** HTTP/2 over TLS with nghttp2's h2load: --h2-clients connections, --h2-streams concurrent streams each, one thread. */
async function loadH2(url, seconds) {
  const args = ['-c', `${flags['h2-clients']}`, '-m', `${flags['h2-streams']}`, '-t', '1', '-D', `${seconds}`]
  if (flags.warmup > 0) args.push('--warm-up-time', `${flags.warmup}`)
  const { stdout } = await run('h2load', [...args, `${url}/api/items`], { maxBuffer: 1 << 24 })
  const done = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout)
  const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(stdout)
  const proto = /Application protocol: (\S+)/.exec(stdout)
  if (!done || !rps || proto?.[1] !== 'h2') throw new Error(`h2load output not understood (or not h2):\n${stdout}`)
  // "time for request:  min  max  mean  sd  +/- sd": only the mean is comparable (h2load prints no percentiles).
  const t = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(stdout)
  const ms = (s) => (s.endsWith('us') ? Number.parseFloat(s) / 1000 : s.endsWith('ms') ? Number.parseFloat(s) : Number.parseFloat(s) * 1000)
  return {
    requests: Number(done[3]),
    rps: Number(rps[1]),
    p50: t ? Number(ms(t[3]).toFixed(2)) : Number.NaN,
    p99: t ? Number(ms(t[2]).toFixed(2)) : Number.NaN,
    failed: Number(done[4]) + Number(done[5]),
  }
}

function markdown({ machine: m, loadavgAfter, options: o, modes: ms }) {
  const f0 = (x) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(0))
  const f2 = (x) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(2))
  const out = [
    `### ${m.date.slice(0, 10)}: ${m.cpu}, ${m.cores} cores, Node ${m.node}`,
    '',
    `${o.rounds} interleaved rounds x ${o.duration} s (after ${o.warmup} s warm-up), GET with a ${o['body-bytes']}-byte answer, ` +
      `one upstream; every proxy one process. Load average before ${m.loadavg.join(' ')}, after ${loadavgAfter.join(' ')}.`,
  ]
  const table = (title, mode, ref, note) => {
    out.push('', `**${title}**`, '', `| target | req/s | req per proxy CPU-s | p50 ms | p99 ms | failed | req/s vs ${ref} (pairs) | per core vs ${ref} (pairs) |`)
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const name of mode.names) {
      const s = mode.summary[name]
      out.push(
        `| ${name} | ${f0(s.rps)} | ${f0(s.perCore)} | ${s.p50} | ${s.p99} | ${s.failed} | ${f2(mode.paired(name, ref, 'rps'))} | ${f2(mode.paired(name, ref, 'perCore'))} |`,
      )
    }
    if (note) out.push('', note)
  }
  if (ms.https) table(`HTTPS HTTP/1.1 keep-alive, ${o.connections} connections (autocannon)`, ms.https, 'bare-tls')
  if (ms.h2)
    table(
      `HTTP/2 over TLS, h2load -c ${o['h2-clients']} -m ${o['h2-streams']} -t 1`,
      ms.h2,
      'nginx-h2',
      'h2load prints no percentiles: the p50 column is its mean and the p99 column its max time for request.',
    )
  if (ms.plain) table(`HTTP/1.1 cleartext, ${o.connections} connections (autocannon)`, ms.plain, 'bare')
  return out.join('\n')
}
