// Two proxies sharing Redis against two proxies with the in-process store
// (see the README's Development section): the same autocannon load, split evenly over the
// two proxies of a pair, in interleaved rounds (the order rotates each round);
// reports the median req/s of each pair and the Redis/memory ratio (target >= 0.95).
// The data path never touches Redis; this measures what sharing costs around it
// (pub/sub, the revision poll, the lease, in the same event loop).
// Needs redis-server on PATH. All on 127.0.0.1; Redis on a free port, without persistence.
//   npm run build && node bench/redis.js --duration 5 --rounds 3 --connections 50
// Other flags: --warmup S, --dist DIR (a build other than ./dist), --changes-per-s N (weight
// changes through one Redis proxy during its runs, default 1).
import { spawn } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, connect as tcpConnect } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { cpuMs, machine, median, parseFlags, startChild, stickyRequests } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const flags = parseFlags(
  { duration: 5, rounds: 3, warmup: 1, connections: 50, 'changes-per-s': 1, dist: join(root, 'dist') },
  'usage: npm run bench:redis -- [--duration S] [--rounds N] [--warmup S] [--connections N] [--changes-per-s N] [--dist DIR]',
)
const opts = {
  duration: flags.duration,
  rounds: flags.rounds,
  warmup: flags.warmup,
  connections: flags.connections,
  changesPerS: flags['changes-per-s'],
  dist: resolve(flags.dist),
}
const TOKEN = 'bench-token'

const info = machine()
console.log(`node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.platform}, ${info.date}`)
console.log(`load average before: ${info.loadavg.join(' ')}`)

await mkdir(outDir, { recursive: true })
const children = []
let redis
const stopAll = async () => {
  await Promise.all(children.map((c) => c.stop()))
  redis?.kill('SIGKILL')
}
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const redisPort = await freePort()
  redis = spawn('redis-server', ['--port', `${redisPort}`, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  })
  redis.once('error', (err) => {
    throw new Error(`redis-server could not start (is it installed?): ${err.message}`)
  })
  await waitForPing(redisPort)

  const upstream = startChild('upstream', [join(root, 'bench/upstream.js'), 'blue', 'green'])
  children.push(upstream)
  const { ports } = await upstream.ready
  const blue = `http://127.0.0.1:${ports.blue}`
  const green = `http://127.0.0.1:${ports.green}`

  const pairs = { memory: [], redis: [] }
  for (const kind of ['memory', 'redis']) {
    for (let i = 0; i < 2; i++) {
      const config = {
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, token: TOKEN },
        versions: { blue: { instances: [{ url: blue }] }, green: { instances: [{ url: green }] } },
        weights: { blue: 90, green: 10 },
        sticky: { keys: ['header:x-user-id'] },
        log: { level: 'info' },
        ...(kind === 'redis' ? { redis: { url: `redis://127.0.0.1:${redisPort}`, keyPrefix: 'bench:' } } : {}),
      }
      const file = join(outDir, `sluice-redis-bench-${kind}-${i}.json`)
      await writeFile(file, JSON.stringify(config, null, 2))
      const child = startChild(`${kind}-${i}`, [join(opts.dist, 'cli/main.js'), 'serve', '--config', file])
      children.push(child)
      const { port, adminPort } = await child.ready
      pairs[kind].push({ url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}`, pid: child.proc.pid })
    }
  }
  const shared = await checkShared(pairs.redis)
  console.log(`redis pair shares state: a change on one reached the other in ${shared} ms`)

  const requests = stickyRequests(1000)
  const runs = []
  const kinds = ['memory', 'redis']
  for (let round = 0; round < opts.rounds; round++) {
    for (const kind of round % 2 === 0 ? kinds : [...kinds].reverse()) {
      if (opts.warmup > 0) await loadPair(pairs[kind], requests, opts.warmup)
      const changer = kind === 'redis' ? startChanges(pairs.redis[0]) : undefined
      const cpuBefore = pairCpuMs(pairs[kind])
      const r = await loadPair(pairs[kind], requests, opts.duration)
      // CPU per request stays comparable when req/s swings with other processes' load.
      const cpuUsPerReq = ((pairCpuMs(pairs[kind]) - cpuBefore) * 1000) / (r.rps * opts.duration)
      const changes = await changer?.stop()
      runs.push({ round, kind, ...r, cpuUsPerReq, changes })
      console.log(
        `round ${round + 1}/${opts.rounds} ${kind.padEnd(6)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99} ms  cpu ${cpuUsPerReq.toFixed(0)} us/req` +
          (changes === undefined ? '' : `  weight changes ${changes}`) +
          (r.non2xx + r.errors > 0 ? `  non-2xx ${r.non2xx} errors ${r.errors}` : ''),
      )
    }
  }
  const summary = {}
  for (const kind of kinds) {
    const mine = runs.filter((r) => r.kind === kind)
    summary[kind] = {
      rps: median(mine.map((r) => r.rps)),
      p99: median(mine.map((r) => r.p99)),
      cpuUsPerReq: median(mine.map((r) => r.cpuUsPerReq)),
      failed: mine.reduce((n, r) => n + r.non2xx + r.errors, 0),
    }
  }
  const paired = median(
    runs
      .filter((r) => r.kind === 'redis')
      .map((r) => r.rps / runs.find((m) => m.kind === 'memory' && m.round === r.round).rps),
  )
  const result = {
    machine: info,
    loadavgAfter: machine().loadavg,
    options: opts,
    runs,
    summary,
    ratio: {
      rps: summary.redis.rps / summary.memory.rps,
      pairedRps: paired,
      cpuUsPerReq: summary.redis.cpuUsPerReq / summary.memory.cpuUsPerReq,
    },
  }
  await stopAll()
  const file = join(outDir, `redis-${info.date.replace(/[:.]/g, '-')}.json`)
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
  console.log(`\nresults: ${file}\n`)
  console.log(
    [
      `### ${info.date.slice(0, 10)}: two proxies sharing Redis vs two with the in-process store; ${info.cpu}, ${info.cores} cores, Node ${info.node}`,
      '',
      `${opts.rounds} interleaved rounds x ${opts.duration} s, ${opts.connections} connections split over the two proxies of a pair, ` +
        `${opts.changesPerS} weight change/s through one Redis proxy during its runs. Load average before ${info.loadavg.join(' ')}, after ${result.loadavgAfter.join(' ')}.`,
      '',
      '| pair | req/s (median) | p99 ms | proxies CPU us/req | non-2xx + errors |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...kinds.map(
        (k) =>
          `| ${k} | ${summary[k].rps.toFixed(0)} | ${summary[k].p99.toFixed(1)} | ${summary[k].cpuUsPerReq.toFixed(0)} | ${summary[k].failed} |`,
      ),
      '',
      `redis / memory req/s: ${result.ratio.rps.toFixed(3)} (median of per-round ratios ${paired.toFixed(3)}; target >= 0.95); ` +
        `CPU per request ${result.ratio.cpuUsPerReq.toFixed(3)}`,
    ].join('\n'),
  )
} finally {
  await stopAll()
}

function pairCpuMs(pair) {
  return pair.reduce((n, p) => n + (cpuMs(p.pid) ?? Number.NaN), 0)
}

/** The same load through both proxies of a pair at once, half the connections each; summed. */
async function loadPair(pair, requests, seconds) {
  const each = Math.max(1, Math.floor(opts.connections / pair.length))
  const results = await Promise.all(
    pair.map((p) => autocannon({ url: p.url, connections: each, duration: seconds, requests })),
  )
  return {
    rps: results.reduce((n, r) => n + r.requests.total / r.duration, 0),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    non2xx: results.reduce((n, r) => n + r.non2xx, 0),
    errors: results.reduce((n, r) => n + r.errors + r.timeouts, 0),
  }
}

/** Weight changes through one proxy's admin API while a run goes on (they reach the other by pub/sub). */
function startChanges(proxy) {
  if (opts.changesPerS <= 0) return undefined
  let n = 0
  const timer = setInterval(() => {
    const green = n % 2 === 0 ? 20 : 10
    n++
    void putWeights(proxy, { blue: 100 - green, green }).catch(() => {})
  }, 1000 / opts.changesPerS)
  return {
    async stop() {
      clearInterval(timer)
      await putWeights(proxy, { blue: 90, green: 10 })
      return n
    },
  }
}

function putWeights(proxy, weights) {
  return fetch(`${proxy.admin}/v1/weights`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(weights),
  }).then((r) => r.arrayBuffer())
}

/** Changes the weights on one proxy and times how long the other takes to show them. */
async function checkShared([a, b]) {
  const started = Date.now()
  await putWeights(a, { blue: 80, green: 20 })
  for (;;) {
    const res = await fetch(`${b.admin}/v1/state`, { headers: { authorization: `Bearer ${TOKEN}` } })
    const state = await res.json()
    if (state.weights?.green === 20) break
    if (Date.now() - started > 5000) throw new Error('the redis pair does not share state')
    await new Promise((r) => setTimeout(r, 10))
  }
  const ms = Date.now() - started
  await putWeights(a, { blue: 90, green: 10 })
  return ms
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

async function waitForPing(port) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = tcpConnect(port, '127.0.0.1', () => s.write('PING\r\n'))
      s.once('data', (d) => {
        s.destroy()
        resolve(d.toString().startsWith('+PONG'))
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
