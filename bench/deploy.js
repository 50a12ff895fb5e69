// Zero-failure deployment changes under load. autocannon drives keep-alive
// load (sticky and keyless mixed) through `sluice serve` (dist/, a child
// process) for a fixed time while this script changes what is behind it:
//   a quiet phase, then a blue -> green cutover (PUT /v1/weights), a drain
//   and undrain of one green instance, a kill of the other (sockets
//   destroyed, connection refused) and its restart on the same port.
// Printed: total requests, failed requests (non-2xx + errors; target 0) and
// the p99 latency during the changes against the p99 of the quiet phase
// before them (target <= 1.5x).
// The upstreams and autocannon run here, the proxy in its own process; all
// on 127.0.0.1 with ephemeral ports.
// SCENARIO=dns instead follows a rolling deploy through DNS alone: blue is
// discovered from a real dnsmasq (blue.sluice.test), its instances on
// 127.0.0.2.. one port; each old address is replaced by a new one (new added,
// then old removed, then the old process exits 2 s later, as a terminating pod
// does), with no admin call.
//   npm run bench:deploy            (env: DURATION_S, CONNECTIONS, RATE req/s, 0 = closed loop, SCENARIO)
//   npm run bench:deploy -- --uniform-faults
//                                   the split under a fault on every instance alike (bench/deploy-uniform-faults.js)
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { uniformFaults } from './deploy-uniform-faults.js'
import { envNumber, latencyHistogram, machine, median, parseFlags, percentileMs, recordMs, startChild, until200, usageError } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const flags = parseFlags(
  { 'uniform-faults': false },
  'usage: [DURATION_S=20] [CONNECTIONS=8] [RATE=0] [WARMUP_S=5] [SCENARIO=dns] npm run bench:deploy\n' +
    '       [DURATION_S=10] [CONNECTIONS=16] [FAULT=500|reset|timeout] [FAULT_RATE=0.3] npm run bench:deploy -- --uniform-faults',
)
if (flags['uniform-faults']) {
  await uniformFaults(root)
  process.exit()
}
const DURATION_S = envNumber('DURATION_S', 20)
const CONNECTIONS = envNumber('CONNECTIONS', 8)
const RATE = envNumber('RATE', 0)
const TOKEN = 'bench-token'
/** An unmeasured run first, so the JIT has settled before the "before" window [0, CHANGES_AT). */
const WARMUP_S = envNumber('WARMUP_S', 5)
const CHANGES_AT = Math.round(DURATION_S * 300)
const DNS = process.env.SCENARIO === 'dns'
if (![undefined, '', 'dns'].includes(process.env.SCENARIO)) usageError(`SCENARIO is dns or unset, not '${process.env.SCENARIO}'`)
const DNS_NAME = 'blue.sluice.test'

/** A loopback upstream that can crash (sockets destroyed) and come back on the same port. */
async function upstream(name, host = '127.0.0.1', firstPort = 0) {
  const body = JSON.stringify({ name })
  const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-upstream': name }
  const u = { name, url: '', port: 0, server: undefined, sockets: new Set() }
  u.start = async (port = firstPort) => {
    const server = createServer((req, res) => {
      req.resume()
      res.writeHead(200, headers)
      res.end(body)
    })
    server.keepAliveTimeout = 30_000
    server.on('connection', (s) => {
      u.sockets.add(s)
      s.once('close', () => u.sockets.delete(s))
    })
    await new Promise((r) => server.listen(port, host, r))
    u.server = server
    u.port = server.address().port
    u.url = `http://${host}:${u.port}`
  }
  u.kill = () => {
    u.server.close()
    for (const s of u.sockets) s.destroy()
  }
  u.close = () =>
    new Promise((r) => {
      if (!u.server.listening) return r()
      u.server.close(() => r())
      u.server.closeAllConnections()
    })
  await u.start()
  return u
}

async function adminCall(adminUrl, method, path, body) {
  const res = await fetch(adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
  return res.json()
}

/** A real dnsmasq answering `name` from a hosts file it re-reads on SIGHUP (SCENARIO=dns). */
async function dnsmasq(dir, name, addresses) {
  const hosts = join(dir, 'hosts')
  const write = (list) => writeFileSync(hosts, list.map((a) => `${a} ${name}`).join('\n') + '\n')
  write(addresses)
  const port = 20000 + Math.floor(Math.random() * 20000)
  const proc = spawn(
    '/usr/sbin/dnsmasq',
    ['--no-daemon', `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts'].concat(
      [`--addn-hosts=${hosts}`, '--local=/sluice.test/', '--pid-file=', '--user=', '--log-facility=-'],
    ),
    { stdio: 'ignore' },
  )
  await new Promise((r) => setTimeout(r, 300))
  if (proc.exitCode !== null) throw new Error(`dnsmasq exited at start (port ${port} taken?)`)
  return {
    server: `127.0.0.1:${port}`,
    set(list) {
      write(list)
      proc.kill('SIGHUP')
    },
    stop: () => proc.kill('SIGKILL'),
  }
}

const info = machine()
console.log(`node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.platform}, ${info.date}`)
console.log(`load average before: ${info.loadavg.join(' ')}`)
console.log(
  `${DURATION_S} s, ${CONNECTIONS} keep-alive connections, ${RATE > 0 ? `${RATE} req/s` : 'closed loop'}, ` +
    `half the requests with a sticky key; ${WARMUP_S} s unmeasured warm-up; changes from ${CHANGES_AT / 1000} s`,
)

const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-deploy-'))
const ups = {
  blue: [await upstream('blue'), await upstream('blue')],
  green: [await upstream('green'), await upstream('green')],
}
// SCENARIO=dns: blue 1-4 on 127.0.0.2-5, one port; 1 and 2 are the old release, 3 and 4 the new.
if (DNS) {
  for (const u of ups.blue) await u.close()
  const first = await upstream('blue', '127.0.0.2')
  ups.blue = [first]
  for (let i = 3; i <= 5; i++) ups.blue.push(await upstream('blue', `127.0.0.${i}`, first.port))
}
const dns = DNS ? await dnsmasq(dir, DNS_NAME, ['127.0.0.2', '127.0.0.3']) : undefined
const blueSpec = DNS
  ? { discover: { dns: DNS_NAME, port: ups.blue[0].port, intervalMs: 500 } }
  : { instances: ups.blue.map((u) => ({ url: u.url })) }
const configFile = join(dir, 'sluice.json')
writeFileSync(
  configFile,
  JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: TOKEN },
    ...(dns ? { resolver: { servers: [dns.server] } } : {}),
    versions: {
      blue: blueSpec,
      green: { instances: ups.green.map((u) => ({ url: u.url })) },
    },
    weights: { blue: 100, green: 0 },
    sticky: { keys: ['header:x-user-id'] },
    health: { intervalMs: 500, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 2 },
    // A short ejection so the killed instance is back within the run once restarted.
    outlier: { consecutiveFailures: 5, ejectionMs: 2_000 },
    drain: { timeoutMs: 5_000 },
    log: { level: 'info' },
  }),
)
const proxy = startChild('sluice', [join(root, 'dist/cli/main.js'), 'serve', '--config', configFile])

let failedDuring = 0
let failedBefore = 0
const before = latencyHistogram()
const during = latencyHistogram()
const timeline = []
/** A latency histogram per second of the run, for the per-second table. */
const perSecond = []
let t0 = 0
const at = () => performance.now() - t0

try {
  const { port, adminPort } = await proxy.ready
  const url = `http://127.0.0.1:${port}`
  const adminUrl = `http://127.0.0.1:${adminPort}`
  await until200(`${adminUrl}/readyz`)

  // Every other request carries one of 200 sticky keys.
  const requests = []
  for (let i = 0; i < 200; i++) {
    requests.push({ method: 'GET', path: '/api/items', headers: { 'x-user-id': `user-${i}` } })
    requests.push({ method: 'GET', path: '/api/items' })
  }

  const step = async (label, fn) => {
    const started = at()
    await fn()
    timeline.push(`${(started / 1000).toFixed(1)} s  ${label}`)
  }
  const admin = (method, path, body) => adminCall(adminUrl, method, path, body)
  const [g1, g2] = ups.green
  const [b1, b2] = ups.blue
  const rolling = [
    [CHANGES_AT, 'DNS: add new blue 3', () => dns.set(['127.0.0.2', '127.0.0.3', '127.0.0.4'])],
    [DURATION_S * 400, 'DNS: remove old blue 1', () => dns.set(['127.0.0.3', '127.0.0.4'])],
    [DURATION_S * 400 + 2000, 'old blue 1 exits (sockets destroyed)', () => b1.kill()],
    [DURATION_S * 550, 'DNS: add new blue 4', () => dns.set(['127.0.0.3', '127.0.0.4', '127.0.0.5'])],
    [DURATION_S * 700, 'DNS: remove old blue 2', () => dns.set(['127.0.0.4', '127.0.0.5'])],
    [DURATION_S * 700 + 2000, 'old blue 2 exits (sockets destroyed)', () => b2.kill()],
  ]
  const script = DNS ? rolling : [
    [
      CHANGES_AT,
      'cutover: PUT /v1/weights blue 0, green 100',
      () => admin('PUT', '/v1/weights', { blue: 0, green: 100 }),
    ],
    [DURATION_S * 400, 'drain green instance 1', () => admin('POST', '/v1/drain', { url: g1.url })],
    [DURATION_S * 500, 'undrain green instance 1', () => admin('POST', '/v1/undrain', { url: g1.url })],
    [DURATION_S * 600, 'kill green instance 2 (sockets destroyed, port closed)', () => g2.kill()],
    [DURATION_S * 750, 'restart green instance 2 on its port', () => g2.start(g2.port)],
  ]

  const load = { url, connections: CONNECTIONS, pipelining: 1, ...(RATE > 0 ? { overallRate: RATE } : {}), requests }
  if (WARMUP_S > 0) await autocannon({ ...load, duration: WARMUP_S })
  const instance = autocannon({
    ...load,
    duration: DURATION_S,
  })
  t0 = performance.now()
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    const t = at()
    const sec = Math.floor(t / 1000)
    recordMs((perSecond[sec] ??= latencyHistogram()), responseTime)
    const bad = statusCode < 200 || statusCode >= 300
    if (t < CHANGES_AT) {
      if (bad) failedBefore++
      else recordMs(before, responseTime)
    } else {
      if (bad) failedDuring++
      else recordMs(during, responseTime)
    }
  })
  instance.on('reqError', () => {
    if (at() < CHANGES_AT) failedBefore++
    else failedDuring++
  })
  const runner = (async () => {
    for (const [when, label, fn] of script) {
      const wait = when - at()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      await step(label, fn)
    }
  })()
  const result = await instance
  await runner

  const state = await admin('GET', '/v1/state')
  const p99Before = percentileMs(before, 99)
  const p99During = percentileMs(during, 99)
  const ratio = p99During / p99Before
  // Robust to a noisy neighbour's burst: the median over seconds of each second's p99.
  const secondsP99 = (from, to) =>
    median(
      perSecond
        .slice(from, to)
        .filter((h) => h?.totalCount > 0)
        .map((h) => percentileMs(h, 99)),
    )
  const medBefore = secondsP99(0, CHANGES_AT / 1000)
  const medDuring = secondsP99(Math.ceil(CHANGES_AT / 1000), DURATION_S)
  console.log('')
  for (const line of timeline) console.log(`  ${line}`)
  console.log('')
  console.log('second  responses  p99 ms')
  for (let sec = 0; sec < perSecond.length; sec++) {
    const h = perSecond[sec]
    const p99 = h === undefined ? Number.NaN : percentileMs(h, 99)
    console.log(`${String(sec).padStart(6)}  ${String(h?.totalCount ?? 0).padStart(9)}  ${p99.toFixed(2)}`)
  }
  console.log('')
  const failedTotal = failedBefore + failedDuring
  const followed = DNS ? state.versions.blue.instances.map((i) => i.url).join(', ') : ''
  const green = state.versions.green.instances
    .map((i) => `${i.healthy ? 'healthy' : 'unhealthy'}${i.ejected ? ' ejected' : ''}${i.draining ? ' draining' : ''}`)
    .join(', ')
  console.log(`total requests     ${result.requests.total}`)
  console.log(`failed requests    ${failedTotal}  (before the changes ${failedBefore}, during ${failedDuring})`)
  console.log(`  autocannon       non-2xx ${result.non2xx}, errors ${result.errors}, timeouts ${result.timeouts}`)
  console.log(`requests/s         ${Math.round(result.requests.average)}`)
  console.log(`p99 before         ${p99Before.toFixed(2)} ms  (${before.totalCount} responses, 0-${CHANGES_AT / 1000} s)`)
  console.log(
    `p99 during         ${p99During.toFixed(2)} ms  (${during.totalCount} responses, ${CHANGES_AT / 1000}-${DURATION_S} s)`,
  )
  console.log(`p99 ratio          ${ratio.toFixed(2)}x  (target <= 1.5x)`)
  console.log(
    `median of per-second p99: before ${medBefore.toFixed(2)} ms, during ${medDuring.toFixed(2)} ms, ` +
      `ratio ${(medDuring / medBefore).toFixed(2)}x`,
  )
  console.log(`green at the end   ${green}`)
  if (DNS) console.log(`blue at the end    ${followed}`)
  console.log(
    JSON.stringify({
      bench: DNS ? 'deploy-dns' : 'deploy',
      ...info,
      durationS: DURATION_S,
      connections: CONNECTIONS,
      rate: RATE,
      total: result.requests.total,
      failed: failedTotal,
      non2xx: result.non2xx,
      errors: result.errors,
      p99BeforeMs: p99Before,
      p99DuringMs: p99During,
      p99Ratio: Number(ratio.toFixed(3)),
      medianSecondP99BeforeMs: medBefore,
      medianSecondP99DuringMs: medDuring,
    }),
  )
  process.exitCode = failedTotal === 0 ? 0 : 1
} finally {
  await proxy.stop()
  dns?.stop()
  for (const u of [...ups.blue, ...ups.green]) await u.close()
  rmSync(dir, { recursive: true, force: true })
}
