// How fast a failing canary is rolled back under load, and what users see
// meanwhile. The proxy runs as `sluice serve` in a child process; the two
// upstreams and an open-loop load at a fixed rate run here. A rollout puts
// the canary at 10% (a long hold, so it stays there); after a healthy
// warm-up the canary starts answering 500 to a share of its requests.
// Reported per scenario: the time from the canary's first failure to the
// rollback audit entry (the weights revert in that commit), the canary's
// requests in between, and the failed responses users saw.
//
// Run: npm run bench:rollback   (env: RATE, INTERVAL_MS, MIN_REQUESTS, WARMUP_MS, FAIL_RATES)
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { envNumber, parseFlags, usageError } from './lib.js'

parseFlags({}, 'usage: [RATE=500] [INTERVAL_MS=1000] [MIN_REQUESTS=100] [WARMUP_MS=3000] [FAIL_RATES=1,0.2] npm run bench:rollback')
const RATE = envNumber('RATE', 500)
const INTERVAL_MS = envNumber('INTERVAL_MS', 1000)
const MIN_REQUESTS = envNumber('MIN_REQUESTS', 100)
const WARMUP_MS = envNumber('WARMUP_MS', 3000)
const FAIL_RATES = (process.env.FAIL_RATES || '1,0.2').split(',').map(Number)
if (!FAIL_RATES.every((r) => r > 0 && r <= 1)) usageError('FAIL_RATES wants shares in (0, 1], comma-separated')
const TOKEN = 'bench-token'
const CANARY_WEIGHT = 10

const cpu = cpus()
console.log(
  `node ${process.version}, ${cpu[0]?.model ?? 'unknown cpu'}, ${cpu.length} cores, ${new Date().toISOString()}`,
)
console.log(
  `load ${RATE} req/s open loop, canary at ${CANARY_WEIGHT}%, analysis.intervalMs ${INTERVAL_MS}, ` +
    `minRequests ${MIN_REQUESTS}, outlier ejection off, ${WARMUP_MS} ms healthy warm-up`,
)

/** An upstream that records arrivals; `failEvery` > 0 makes every n-th request (from `failing` on) a 500. */
async function upstream(name) {
  const u = { name, arrivals: [], failEvery: 0, failingSince: 0, firstFailureAt: 0, url: '' }
  let n = 0
  const server = createServer((req, res) => {
    req.resume()
    const now = Date.now()
    u.arrivals.push(now)
    const fail = u.failEvery > 0 && ++n % u.failEvery === 0
    if (fail && u.firstFailureAt === 0) u.firstFailureAt = now
    res.writeHead(fail ? 500 : 200, { 'content-type': 'text/plain', 'x-upstream': name })
    res.end(fail ? 'boom' : 'ok')
  })
  server.keepAliveTimeout = 30_000
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  u.url = `http://127.0.0.1:${server.address().port}`
  u.close = () =>
    new Promise((r) => {
      server.close(r)
      server.closeAllConnections()
    })
  return u
}

/** `sluice serve` in a child process; resolves with its ports once it logs "listening". */
async function startProxy(config) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'))
  const file = join(dir, 'sluice.json')
  writeFileSync(file, JSON.stringify(config))
  const child = spawn(process.execPath, ['dist/cli/main.js', 'serve', '--config', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const ports = await new Promise((resolve, reject) => {
    let buf = ''
    child.stdout.on('data', (d) => {
      buf += d
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        if (line.includes('"msg":"listening"')) resolve(JSON.parse(line))
      }
    })
    child.once('exit', (code) => reject(new Error(`sluice exited with ${code}`)))
  })
  const stop = async () => {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    rmSync(dir, { recursive: true, force: true })
  }
  return { url: `http://127.0.0.1:${ports.port}`, adminUrl: `http://127.0.0.1:${ports.adminPort}`, stop }
}

async function adminCall(p, method, path, body) {
  const res = await fetch(p.adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })
  return { status: res.status, body: await res.json() }
}

/** Fires RATE requests per second in 5 ms batches whatever the answers take; returns the counts on stop. */
function openLoop(url) {
  const dispatcher = new Agent({ connections: 256, keepAliveTimeout: 30_000, pipelining: 1 })
  const r = { sent: 0, ok: 0, failed: 0, failedAt: [] }
  const started = Date.now()
  const pending = new Set()
  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - started) * RATE) / 1000)
    while (r.sent < due) {
      r.sent++
      const p = request(url, { dispatcher, headers: { 'x-user-id': `u${r.sent % 1000}` } })
        .then(async (res) => {
          await res.body.text()
          if (res.statusCode >= 500) {
            r.failed++
            r.failedAt.push(Date.now())
          } else r.ok++
        })
        .catch(() => {
          r.failed++
          r.failedAt.push(Date.now())
        })
        .finally(() => pending.delete(p))
      pending.add(p)
    }
  }, 5)
  return {
    r,
    async stop() {
      clearInterval(timer)
      await Promise.all(pending)
      await dispatcher.close()
      return r
    },
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function scenario(failRate) {
  const blue = await upstream('blue')
  const green = await upstream('green')
  const proxy = await startProxy({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: TOKEN },
    versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
    weights: { blue: 100 },
    sticky: { keys: ['header:x-user-id'] },
    outlier: { consecutiveFailures: 0 },
    analysis: { intervalMs: INTERVAL_MS, windowMs: 60_000, minRequests: MIN_REQUESTS },
    log: { level: 'info' },
  })
  const load = openLoop(proxy.url)
  try {
    await sleep(500)
    const steps = [{ weight: CANARY_WEIGHT, holdMs: 3_600_000 }, { weight: 100 }]
    const started = await adminCall(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps })
    if (started.status !== 201) throw new Error(`rollout start: ${JSON.stringify(started.body)}`)
    const warmupFrom = Date.now()
    const servedBefore = blue.arrivals.length + green.arrivals.length
    await sleep(WARMUP_MS)
    const healthy = green.arrivals.length
    const baselineBefore = blue.arrivals.length
    const servedRate = ((baselineBefore + healthy - servedBefore) * 1000) / (Date.now() - warmupFrom)
    green.failingSince = Date.now()
    green.failEvery = Math.round(1 / failRate)
    const deadline = Date.now() + 30_000
    let entry
    while (!entry && Date.now() < deadline) {
      await sleep(20)
      const audit = await adminCall(proxy, 'GET', '/v1/audit')
      entry = audit.body.findLast((e) => e.action === 'rollout.rollback')
    }
    await sleep(500)
    const r = await load.stop()
    if (!entry) throw new Error('no rollback within 30 s')
    const rolledBackAt = Date.parse(entry.at)
    const first = green.firstFailureAt
    const failingEra = green.arrivals.filter((t) => t >= green.failingSince)
    const between = failingEra.filter((t) => t <= rolledBackAt).length
    const minReachedAt = failingEra[MIN_REQUESTS - 1]
    const after = green.arrivals.filter((t) => t > rolledBackAt)
    return {
      failRate,
      reactionMs: rolledBackAt - first,
      sinceMinRequestsMs: minReachedAt === undefined ? undefined : rolledBackAt - minReachedAt,
      canaryRequestsBetween: between,
      canaryHealthyBefore: healthy,
      baselineBefore,
      servedRate,
      rolloutCanaryMinAt: green.arrivals[MIN_REQUESTS - 1],
      firstFailure: first,
      rolledBackAt,
      userFailures: r.failed,
      userFailuresAfterRollback: r.failedAt.filter((t) => t > rolledBackAt).length,
      sent: r.sent,
      lastCanaryArrivalAfterMs: after.length ? after.at(-1) - rolledBackAt : 0,
      reason: entry.reason,
    }
  } finally {
    await load.stop().catch(() => {})
    await proxy.stop()
    await blue.close()
    await green.close()
  }
}

const results = []
for (const rate of FAIL_RATES) results.push(await scenario(rate))
for (const x of results) {
  console.log(`\ncanary failing ${Math.round(x.failRate * 100)}% of its requests:`)
  console.log(`  upstreams served ${Math.round(x.servedRate)} req/s during the warm-up (asked: ${RATE})`)
  console.log(`  first failure -> rollback (weights reverted)  ${x.reactionMs} ms`)
  // The verdict needs minRequests canary requests in the rollout: from the
  // later of that moment and the first failure, the target is one interval.
  const decidable = Math.max(x.firstFailure, x.rolloutCanaryMinAt ?? Number.POSITIVE_INFINITY)
  const fromDecidable = Number.isFinite(decidable) ? `${x.rolledBackAt - decidable} ms` : '-'
  console.log(`  first failure and ${MIN_REQUESTS} canary requests in the rollout -> rollback  ${fromDecidable}`)
  const sinceMin = x.sinceMinRequestsMs === undefined ? 'rolled back before it' : `${x.sinceMinRequestsMs} ms`
  console.log(`  ${MIN_REQUESTS}th failing-era canary request -> rollback  ${sinceMin}`)
  console.log(
    `  canary requests from first failure to rollback  ${x.canaryRequestsBetween} ` +
      `(${x.canaryHealthyBefore} healthy ones before, against ${x.baselineBefore} of the baseline)`,
  )
  console.log(
    `  failed responses users saw  ${x.userFailures} of ${x.sent} (${x.userFailuresAfterRollback} after the rollback: in flight)`,
  )
  console.log(`  last canary arrival after the rollback  +${x.lastCanaryArrivalAfterMs} ms`)
  console.log(`  reason  ${x.reason}`)
}
