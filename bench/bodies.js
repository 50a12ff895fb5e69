// Large bodies through the edge (issue: 100 MB at ~180 MB/s through sluice against 400-650 through nginx):
// a download and an upload of --mb MB, one at a time, through
//   direct    the upstream itself (bench/body-upstream.js),
//   nginx     nginx as a proxy, proxy_buffering off, proxy_request_buffering off (bench/edge-peers.js),
//   haproxy   HAProxy, one thread,
//   bare      the bare undici pass-through (bench/bare-passthrough.js),
//   sluice    sluice serve, one version with one instance,
// in interleaved rounds (the order rotates each round). Reports the median MB/s of each, the ratios to
// nginx, and the proxy's RSS during the transfers (peak over its RSS just before: flat means the body
// streams through, it is not collected).
//   npm run bench:bodies -- --mb 100 --rounds 5 [--targets direct,nginx,haproxy,bare,sluice] [--cpu-prof]
import { mkdir, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startHaproxy, startNginx, versionOf, NGINX, HAPROXY } from './edge-peers.js'
import { announce, cpuMs, median, parseFlags, rssKiB, startChild, startSluiceFor, usageError } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const opts = parseFlags(
  { mb: 100, rounds: 5, targets: 'direct,nginx,haproxy,bare,sluice', 'cpu-prof': false },
  'usage: npm run bench:bodies -- [--mb N] [--rounds N] [--targets direct,nginx,haproxy,bare,sluice] [--cpu-prof]',
)
const BYTES = Number(opts.mb) * 1024 * 1024
const ROUNDS = Number(opts.rounds)
const TARGETS = opts.targets.split(',')
const KNOWN = ['direct', 'nginx', 'haproxy', 'bare', 'sluice']
for (const t of TARGETS) if (!KNOWN.includes(t)) usageError(`unknown target "${t}" (known: ${KNOWN})`)

const info = announce()
console.log(`${versionOf(NGINX)}; ${versionOf(HAPROXY)}`)
console.log(`${opts.mb} MB each way, ${ROUNDS} rounds, targets ${TARGETS.join(', ')}\n`)

const CHUNK = Buffer.alloc(64 * 1024, 'y')
const agent = new Agent({ keepAlive: true, maxSockets: 1 })

/** GET /download?bytes=N; resolves with the milliseconds from request to last byte. */
function download(url) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = request(`${url}/download?bytes=${BYTES}`, { agent }, (res) => {
      let got = 0
      res.on('data', (c) => (got += c.length))
      res.on('end', () => {
        if (res.statusCode !== 200 || got !== BYTES) reject(new Error(`${url}: status ${res.statusCode}, ${got} of ${BYTES} bytes`))
        else resolve(performance.now() - t0)
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** POST /upload of N bytes, written 64 KiB at a time with backpressure; resolves with the milliseconds to the answer. */
function upload(url) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = request(`${url}/upload`, { agent, method: 'POST', headers: { 'content-length': BYTES } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => (text += c))
      res.on('end', () => {
        const bytes = res.statusCode === 200 ? JSON.parse(text).bytes : -1
        if (bytes !== BYTES) reject(new Error(`${url}: status ${res.statusCode}, upstream got ${bytes} of ${BYTES} bytes`))
        else resolve(performance.now() - t0)
      })
    })
    req.on('error', reject)
    let left = BYTES
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length)
        left -= n
        if (!req.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void req.once('drain', pump)
      }
      req.end()
    }
    pump()
  })
}

/**
 * Runs `transfer` while sampling the proxy's RSS every 20 ms; answers MB/s, the RSS growth in MiB and
 * the proxy's CPU time per MB (user + system: on a shared machine the steadier figure).
 */
async function measured(pid, transfer) {
  const before = pid === undefined ? undefined : rssKiB(pid)
  const cpu0 = pid === undefined ? undefined : cpuMs(pid)
  let peak = before ?? 0
  const timer = setInterval(() => {
    const r = pid === undefined ? undefined : rssKiB(pid)
    if (r !== undefined && r > peak) peak = r
  }, 20)
  try {
    const ms = await transfer()
    const mb = BYTES / 2 ** 20
    return {
      mbps: mb / (ms / 1000),
      growthMiB: before === undefined ? undefined : (peak - before) / 1024,
      cpuMsPerMB: cpu0 === undefined ? undefined : (cpuMs(pid) - cpu0) / mb,
    }
  } finally {
    clearInterval(timer)
  }
}

await mkdir(outDir, { recursive: true })
const children = []
const stopAll = () => Promise.all(children.map((c) => c.stop()))
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const upstream = startChild('upstream', [join(root, 'bench/body-upstream.js')])
  children.push(upstream)
  const upstreamUrl = `http://127.0.0.1:${(await upstream.ready).port}`
  const urls = { direct: upstreamUrl }
  const pids = { direct: undefined }
  const profArgs = (name) => (opts['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', join(outDir, 'prof-bodies', name)] : [])
  for (const [name, start] of [
    ['nginx', startNginx],
    ['haproxy', startHaproxy],
  ]) {
    if (!TARGETS.includes(name)) continue
    const peer = await start(upstreamUrl)
    children.push(peer)
    await peer.ready
    urls[name] = peer.url
    pids[name] = peer.pid
  }
  if (TARGETS.includes('bare')) {
    const b = startChild('bare', [join(root, 'bench/bare-passthrough.js'), upstreamUrl], { execArgv: profArgs('bare') })
    children.push(b)
    urls.bare = `http://127.0.0.1:${(await b.ready).port}`
    pids.bare = b.proc.pid
  }
  if (TARGETS.includes('sluice')) {
    const s = await startSluiceFor(root, children, upstreamUrl, join(outDir, 'sluice-bodies.json'), profArgs('sluice'))
    urls.sluice = s.url
    pids.sluice = s.child.proc.pid
  }

  // One warm-up transfer each way per target (JIT, connection pools, nginx's temp dirs).
  for (const t of TARGETS) {
    await download(urls[t])
    await upload(urls[t])
  }
  const results = Object.fromEntries(TARGETS.map((t) => [t, { down: [], up: [], growth: [], cpuDown: [], cpuUp: [] }]))
  for (let round = 0; round < ROUNDS; round++) {
    const order = TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length])
    const line = []
    for (const t of order) {
      const d = await measured(pids[t], () => download(urls[t]))
      const u = await measured(pids[t], () => upload(urls[t]))
      results[t].down.push(d.mbps)
      results[t].up.push(u.mbps)
      if (d.growthMiB !== undefined) results[t].growth.push(d.growthMiB, u.growthMiB)
      if (d.cpuMsPerMB !== undefined) {
        results[t].cpuDown.push(d.cpuMsPerMB)
        results[t].cpuUp.push(u.cpuMsPerMB)
      }
      line.push(`${t} ${d.mbps.toFixed(0)}/${u.mbps.toFixed(0)}`)
    }
    console.log(`round ${round + 1}: ${line.join(', ')} MB/s down/up`)
  }

  const summary = {}
  console.log('\n| target | download MB/s | upload MB/s | x nginx down | x nginx up | CPU ms/MB down/up | RSS growth during a transfer (max) |')
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  const ref = results.nginx
  for (const t of TARGETS) {
    const r = results[t]
    const down = median(r.down)
    const up = median(r.up)
    const xd = ref ? (down / median(ref.down)).toFixed(2) : '-'
    const xu = ref ? (up / median(ref.up)).toFixed(2) : '-'
    const growth = r.growth.length ? `${Math.max(...r.growth).toFixed(1)} MiB` : '-'
    const cpu = r.cpuDown.length ? `${median(r.cpuDown).toFixed(2)} / ${median(r.cpuUp).toFixed(2)}` : '-'
    summary[t] = { down, up, xNginxDown: xd, xNginxUp: xu, cpu, maxRssGrowthMiB: r.growth.length ? Math.max(...r.growth) : null }
    console.log(`| ${t} | ${down.toFixed(0)} | ${up.toFixed(0)} | ${xd} | ${xu} | ${cpu} | ${growth} |`)
  }
  await writeFile(join(outDir, 'bodies.json'), JSON.stringify({ machine: info, opts, summary, results }, null, 2))
} finally {
  agent.destroy()
  await stopAll()
}
