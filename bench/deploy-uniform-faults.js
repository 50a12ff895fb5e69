// The uniform-fault case of the deploy bench (`node bench/deploy.js --uniform-faults`):
// a fault that hits every instance alike (a shared dependency failing), under
// autocannon load through `sluice serve` (dist/, a child process). blue has two
// instances and weight 90, green one and weight 10 (a canary); every instance
// fails FAULT_RATE of its requests as FAULT says (500, reset, timeout, or all
// three one after another), with outlier ejection on (consecutiveFailures 3).
// Printed per second: the share of requests arriving at green's instance
// (retries included) next to its weight, and the ejections; the target is
// that green stays within 5 points of 10 for the whole run.
//   env: DURATION_S (per fault kind, default 10), CONNECTIONS (default 16), FAULT, FAULT_RATE (default 0.3)
import { createServer } from 'node:http'
import autocannon from 'autocannon'
import { envNumber, machine, serveBlueGreen, usageError } from './lib.js'

const TOKEN = 'bench-token'
const KINDS = ['500', 'reset', 'timeout']

/** A loopback upstream failing `rate` of its requests as `fault.kind` says; counts arrivals per second. */
async function faultyUpstream(name, version, fault, counts) {
  const ok = JSON.stringify({ name })
  const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ok), 'x-upstream': name }
  const hung = new Set()
  const server = createServer((req, res) => {
    req.resume()
    if (req.url === '/healthz') {
      res.writeHead(200, headers)
      res.end(ok)
      return
    }
    if (!counts.measuring) return
    counts.t0 ??= performance.now()
    const sec = Math.floor((performance.now() - counts.t0) / 1000)
    const row = (counts.perSecond[sec] ??= { blue: 0, green: 0 })
    row[version]++
    if (Math.random() < fault.rate) {
      if (fault.kind === 'reset') return req.socket.destroy()
      if (fault.kind === 'timeout') {
        hung.add(res)
        res.once('close', () => hung.delete(res))
        return
      }
      res.writeHead(500, headers)
      res.end(ok)
      return
    }
    res.writeHead(200, headers)
    res.end(ok)
  })
  server.keepAliveTimeout = 30_000
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((r) => {
        for (const res of hung) res.destroy()
        server.close(() => r())
        server.closeAllConnections()
      }),
  }
}

async function metricValue(adminUrl, sample) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `))
  return line === undefined ? 0 : Number(line.slice(sample.length + 1))
}

async function runOne(root, kind, opts) {
  /** Seconds counted from the first measured arrival (autocannon takes a moment to start). */
  const counts = { measuring: false, t0: undefined, perSecond: [] }
  const fault = { kind, rate: opts.rate }
  const ups = {
    blue: [await faultyUpstream('b1', 'blue', fault, counts), await faultyUpstream('b2', 'blue', fault, counts)],
    green: [await faultyUpstream('g1', 'green', fault, counts)],
  }
  const sluice = await serveBlueGreen(root, ups, TOKEN, {
    weights: { blue: 90, green: 10 },
    sticky: { keys: ['header:x-user-id'] },
    // Generous probes: the upstreams share this process with autocannon, and a busy loop must not read as down.
    health: { intervalMs: 2_000, timeoutMs: 2_000, unhealthyThreshold: 3 },
    outlier: { consecutiveFailures: 3, ejectionMs: 1_000 },
    timeouts: { upstreamMs: 200 },
    log: { level: 'error' },
  })
  const { adminUrl } = sluice
  try {
    // Half the requests carry one of 1000 sticky keys drawn at random (a short run still sees many keys), half none.
    const requests = [
      {
        method: 'GET',
        path: '/api/items',
        setupRequest: (req) => {
          const keyed = Math.random() < 0.5
          return { ...req, headers: keyed ? { 'x-user-id': `user-${Math.floor(Math.random() * 1000)}` } : {} }
        },
      },
    ]
    // A hung request holds its connection for the upstream timeout: more connections keep the rate up.
    const connections = kind === 'timeout' ? opts.connections * 4 : opts.connections
    counts.measuring = true
    const result = await autocannon({
      url: sluice.url,
      connections,
      pipelining: 1,
      duration: opts.durationS,
      requests,
    })
    counts.measuring = false
    // Whole seconds only: the last one is cut short by the end of the run.
    const rows = counts.perSecond.slice(0, opts.durationS - 1).filter((r) => r !== undefined)
    const shares = rows.map((r) => (100 * r.green) / (r.blue + r.green))
    const total = rows.reduce((n, r) => n + r.blue + r.green, 0)
    const green = rows.reduce((n, r) => n + r.green, 0)
    const ejections = {
      blue: await metricValue(adminUrl, 'sluice_outlier_ejections_total{version="blue"}'),
      green: await metricValue(adminUrl, 'sluice_outlier_ejections_total{version="green"}'),
    }
    const worst = Math.max(...shares.map((s) => Math.abs(s - 10)))
    console.log('')
    console.log(`30% ${kind}: ${connections} connections, ${result.requests.total} requests`)
    console.log(`  green share per second (weight 10): ${shares.map((s) => s.toFixed(1)).join(' ')}`)
    console.log(
      `  green overall ${((100 * green) / total).toFixed(2)}% of ${total} upstream arrivals; ` +
        `worst second ${worst.toFixed(1)} points off; ejections blue ${ejections.blue}, green ${ejections.green}; ` +
        `non-2xx ${result.non2xx} (${JSON.stringify(result.statusCodeStats)}), errors ${result.errors}`,
    )
    return {
      kind,
      connections,
      requests: result.requests.total,
      greenPercent: Number(((100 * green) / total).toFixed(2)),
      worstSecondPointsOff: Number(worst.toFixed(2)),
      perSecond: shares.map((s) => Number(s.toFixed(1))),
      ejections,
      non2xx: result.non2xx,
      errors: result.errors,
      ok: worst < 5 && ejections.green === 0,
    }
  } finally {
    await sluice.stop()
    for (const u of [...ups.blue, ...ups.green]) await u.close()
  }
}

export async function uniformFaults(root) {
  const opts = {
    durationS: envNumber('DURATION_S', 10),
    connections: envNumber('CONNECTIONS', 16),
    rate: envNumber('FAULT_RATE', 0.3),
  }
  const kinds = process.env.FAULT ? [process.env.FAULT] : KINDS
  if (!kinds.every((k) => KINDS.includes(k))) usageError(`FAULT must be one of ${KINDS.join(', ')}`)
  const info = machine()
  console.log(`node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.platform}, ${info.date}`)
  console.log(`load average before: ${info.loadavg.join(' ')}`)
  console.log(
    `uniform faults: blue 2 instances weight 90, green 1 instance weight 10; ${opts.rate * 100}% of every ` +
      `instance's requests fail; ${opts.durationS} s per kind (${kinds.join(', ')}); outlier consecutiveFailures 3`,
  )
  const runs = []
  for (const kind of kinds) runs.push(await runOne(root, kind, opts))
  console.log(JSON.stringify({ bench: 'deploy-uniform-faults', ...info, ...opts, runs }))
  process.exitCode = runs.every((r) => r.ok) ? 0 : 1
}
