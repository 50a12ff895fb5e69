// Added latency at a moderate, paced rate (issue: +1.5 ms p50 through sluice against ~0 through nginx):
// --rate requests per second (default 1000) over --connections keep-alive connections (default 10),
// for --duration seconds per target per round, to
//   direct    the upstream itself (bench/body-upstream.js, a small JSON answer),
//   bare      the bare undici pass-through (bench/bare-passthrough.js),
//   sluice    sluice serve, one version with one instance,
//   nginx     nginx as a proxy (bench/edge-peers.js), for reference,
//   haproxy   HAProxy, one thread, for reference,
// in interleaved rounds (the order rotates each round). A request's latency runs from the moment it is
// sent to its last byte, recorded in microseconds in an HDR histogram; "added" is a target's p50 minus
// the direct p50 of the same round, and the figures are medians over rounds.
//   npm run bench:latency -- --rounds 5 --duration 5 [--rate 1000] [--connections 10] [--targets ...]
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { HAPROXY, NGINX, startHaproxy, startNginx, versionOf } from './edge-peers.js'
import {
  announce,
  latencyHistogram,
  median,
  pace,
  parseFlags,
  percentileMs,
  recordMs,
  startChild,
  startSluiceFor,
  usageError,
} from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const opts = parseFlags(
  { rate: 1000, connections: 10, duration: 5, rounds: 5, warmup: 1, targets: 'direct,bare,sluice,nginx,haproxy' },
  'usage: npm run bench:latency -- [--rate N] [--connections N] [--duration S] [--rounds N] [--warmup S] ' +
    '[--targets direct,bare,sluice,nginx,haproxy]',
)
const RATE = Number(opts.rate)
const CONNECTIONS = Number(opts.connections)
const TARGETS = opts.targets.split(',')
const KNOWN = ['direct', 'bare', 'sluice', 'nginx', 'haproxy']
for (const t of TARGETS) if (!KNOWN.includes(t)) usageError(`unknown target "${t}" (known: ${KNOWN})`)
if (!TARGETS.includes('direct')) usageError('--targets must include direct: added latency is measured against it')

const info = announce()
console.log(`${versionOf(NGINX)}; ${versionOf(HAPROXY)}`)
console.log(`${RATE} req/s over ${CONNECTIONS} connections, ${opts.duration} s per target, ${opts.rounds} rounds\n`)

/** Sends GET / at the fixed rate for `seconds`; answers the latencies (microseconds, HDR) and the error count. */
async function paced(pool, seconds) {
  const h = latencyHistogram()
  let errors = 0
  await pace(RATE, Math.round(RATE * seconds), async () => {
    const t0 = performance.now()
    try {
      const res = await pool.request({ path: '/', method: 'GET' })
      await res.body.dump()
      if (res.statusCode !== 200) errors++
      recordMs(h, performance.now() - t0)
    } catch {
      errors++
    }
  })
  return { h, errors }
}

await mkdir(outDir, { recursive: true })
const children = []
const pools = []
const stopAll = () => Promise.all([...pools.map((p) => p.destroy()), ...children.map((c) => c.stop())])
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const upstream = startChild('upstream', [join(root, 'bench/body-upstream.js')])
  children.push(upstream)
  const urls = { direct: `http://127.0.0.1:${(await upstream.ready).port}` }
  if (TARGETS.includes('bare')) {
    const b = startChild('bare', [join(root, 'bench/bare-passthrough.js'), urls.direct])
    children.push(b)
    urls.bare = `http://127.0.0.1:${(await b.ready).port}`
  }
  if (TARGETS.includes('sluice'))
    urls.sluice = (await startSluiceFor(root, children, urls.direct, join(outDir, 'sluice-latency.json'))).url
  for (const [name, start] of [
    ['nginx', startNginx],
    ['haproxy', startHaproxy],
  ]) {
    if (!TARGETS.includes(name)) continue
    const peer = await start(urls.direct)
    children.push(peer)
    await peer.ready
    urls[name] = peer.url
  }

  const clients = Object.fromEntries(
    TARGETS.map((t) => {
      const p = new Pool(urls[t], { connections: CONNECTIONS, pipelining: 1, keepAliveTimeout: 60_000 })
      pools.push(p)
      return [t, p]
    }),
  )
  for (const t of TARGETS) await paced(clients[t], Number(opts.warmup))

  const perRound = Object.fromEntries(TARGETS.map((t) => [t, { p50: [], p99: [], added: [], errors: 0 }]))
  for (let round = 0; round < Number(opts.rounds); round++) {
    const order = TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length])
    const p50 = {}
    for (const t of order) {
      const { h, errors } = await paced(clients[t], Number(opts.duration))
      p50[t] = percentileMs(h, 50)
      perRound[t].p50.push(p50[t])
      perRound[t].p99.push(percentileMs(h, 99))
      perRound[t].errors += errors
    }
    for (const t of TARGETS) perRound[t].added.push(p50[t] - p50.direct)
    console.log(`round ${round + 1}: ${order.map((t) => `${t} p50 ${p50[t].toFixed(3)} ms`).join(', ')}`)
  }

  const summary = {}
  const bareAdded = perRound.bare ? median(perRound.bare.added) : undefined
  console.log('\n| target | p50 ms | p99 ms | added p50 over direct, ms | x bare added | errors |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const t of TARGETS) {
    const r = perRound[t]
    const added = median(r.added)
    const xBare = bareAdded !== undefined && t !== 'direct' ? (added / bareAdded).toFixed(2) : '-'
    summary[t] = { p50: median(r.p50), p99: median(r.p99), added, xBare, errors: r.errors }
    console.log(
      `| ${t} | ${median(r.p50).toFixed(3)} | ${median(r.p99).toFixed(3)} | ${t === 'direct' ? '-' : `+${added.toFixed(3)}`} | ${xBare} | ${r.errors} |`,
    )
  }
  await writeFile(join(outDir, 'latency.json'), JSON.stringify({ machine: info, opts, summary, perRound }, null, 2))
} finally {
  await stopAll()
}
