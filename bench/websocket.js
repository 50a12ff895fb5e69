// WebSocket bench: (1) many concurrent idle WebSockets through sluice, with the
// proxy's RSS per connection, in relay and tunnel mode; (2) echo message
// throughput through sluice (relay, tunnel) against the upstream directly, in
// interleaved rounds, reporting medians and ratios.
// The upstream and each sluice run in their own process; the clients run here.
//   npm run build && node bench/websocket.js
// Flags: --idle N (default 10000, lowered to what the fd limit allows: the proxy
// holds two sockets per connection), --duration S, --rounds N, --connections N,
// --window N (messages in flight per connection), --size BYTES,
// --proxy-node-args "ARGS" (node flags for the proxies, e.g. "--cpu-prof --cpu-prof-dir=bench/out/prof"),
// --modes relay,tunnel (which proxies to run; --idle 0 skips the idle part; "relay-base" and
// "tunnel-base" run the build in --base-dist DIR side by side, to compare against an older build).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket, WebSocketServer } from 'ws'
import { cpuMs, machine, median, parseFlags, startChild } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const flags = parseFlags(
  {
    role: '',
    idle: 10_000,
    duration: 5,
    rounds: 3,
    connections: 32,
    window: 16,
    size: 128,
    modes: 'relay,tunnel',
    'base-dist': '',
    'proxy-node-args': '',
  },
  'usage: npm run bench:websocket -- [--idle N] [--duration S] [--rounds N] [--connections N] [--window N] ' +
    '[--size BYTES] [--modes relay,tunnel,relay-base,tunnel-base] [--base-dist DIR] [--proxy-node-args "ARGS"]',
)

// --role upstream: this same file as the echo upstream, in a child process of its own.
if (flags.role === 'upstream') {
  // The echo upstream: every message straight back, same type.
  const server = createServer((_req, res) => res.end('ok'))
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false })
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
      ws.on('error', () => {})
    }),
  )
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () =>
    process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`),
  )
} else {
  await main()
}

async function main() {
  // The children inherit this process's soft limit (run `ulimit -n $(ulimit -Hn)` first to use the hard one).
  const fdLimit = Number(execFileSync('sh', ['-c', 'ulimit -Sn'], { encoding: 'utf8' }).trim()) || 1024
  const wanted = flags.idle
  const opts = {
    // A proxy holds about 20 descriptors of its own (listeners, admin, epoll, stdio); 64 leaves room.
    idle: Math.min(wanted, Math.floor((fdLimit - 64) / 2)),
    duration: flags.duration,
    rounds: flags.rounds,
    connections: flags.connections,
    window: flags.window,
    size: flags.size,
    modes: flags.modes.split(','),
    baseDist: flags['base-dist'],
    proxyNodeArgs: flags['proxy-node-args'].split(' ').filter(Boolean),
  }
  const info = machine()
  console.log(`node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.platform}, ${info.date}`)
  console.log(`load average before: ${info.loadavg.join(' ')}`)
  if (opts.idle < wanted)
    console.log(
      `idle connections lowered from ${wanted} to ${opts.idle}: fd limit ${fdLimit}, two per connection in the proxy`,
    )
  await mkdir(outDir, { recursive: true })

  const children = []
  const stopAll = () => Promise.all(children.map((c) => c.stop()))
  process.once('SIGINT', () => stopAll().then(() => process.exit(130)))
  try {
    const upstream = startChild('upstream', [fileURLToPath(import.meta.url), '--role', 'upstream'])
    children.push(upstream)
    const upstreamUrl = `ws://127.0.0.1:${(await upstream.ready).port}`
    const proxies = {}
    for (const mode of opts.modes) {
      const config = join(outDir, `sluice-ws-${mode}.json`)
      const [wsMode, base] = mode.split('-')
      await writeFile(config, JSON.stringify(sluiceConfig(upstreamUrl.replace('ws:', 'http:'), wsMode), null, 2))
      const main = base === 'base' ? join(opts.baseDist, 'cli/main.js') : join(root, 'dist/cli/main.js')
      const child = startChild(`sluice-${mode}`, [main, 'serve', '--config', config], {
        execArgv: opts.proxyNodeArgs,
      })
      children.push(child)
      const ready = await child.ready
      proxies[mode] = { child, url: `ws://127.0.0.1:${ready.port}`, admin: `http://127.0.0.1:${ready.adminPort}` }
    }

    // (1) Idle connections.
    const idle = {}
    for (const mode of opts.idle > 0 ? opts.modes : []) {
      const p = proxies[mode]
      const warm = await openMany(p.url, 50, 50)
      closeAll(warm)
      await sleep(1000)
      const pid = p.child.proc.pid
      const rssBefore = rssKiB(pid)
      const heapBefore = await proxyMemory(p.admin)
      const settledBefore = await settled(pid, p.admin, false)
      const t0 = performance.now()
      const clients = await openMany(p.url, opts.idle, 250)
      const openSeconds = (performance.now() - t0) / 1000
      await sleep(2000)
      const rssAfter = rssKiB(pid)
      const heapAfter = await proxyMemory(p.admin)
      const settledAfter = await settled(pid, p.admin, true)
      const counted = await countedByProxy(p.admin)
      const n = clients.length
      const perKiB = (before, after) => +((after - before) / 1024 / n).toFixed(2)
      idle[mode] = {
        connections: n,
        countedByProxy: counted,
        openPerSecond: Math.round(n / openSeconds),
        rssBeforeMiB: +(rssBefore / 1024).toFixed(1),
        rssAfterMiB: +(rssAfter / 1024).toFixed(1),
        rssPerConnectionKiB: +((rssAfter - rssBefore) / n).toFixed(2),
        // What 10,000 would add at that rate (the fd limit may keep the run below 10,000).
        rssFor10kMB: +(((rssAfter - rssBefore) * 1024 * 10_000) / n / 1e6).toFixed(1),
        // The JS heap's share (garbage from the handshakes included: no collection is forced).
        heapUsedPerConnectionKiB: perKiB(heapBefore.heapUsed, heapAfter.heapUsed),
        heapTotalPerConnectionKiB: perKiB(heapBefore.heapTotal, heapAfter.heapTotal),
        externalPerConnectionKiB: perKiB(heapBefore.external, heapAfter.external),
        // The same once V8's own idle collection has run, before and after (see settled()).
        settled: {
          before: settledBefore.done,
          after: settledAfter.done,
          waitedS: settledAfter.waitedS,
          rssBeforeMiB: +(settledBefore.rssKiB / 1024).toFixed(1),
          rssAfterMiB: +(settledAfter.rssKiB / 1024).toFixed(1),
          rssPerConnectionKiB: +((settledAfter.rssKiB - settledBefore.rssKiB) / n).toFixed(2),
          rssFor10kMB: +(((settledAfter.rssKiB - settledBefore.rssKiB) * 1024 * 10_000) / n / 1e6).toFixed(1),
          heapUsedPerConnectionKiB: perKiB(settledBefore.heap.heapUsed, settledAfter.heap.heapUsed),
          heapTotalPerConnectionKiB: perKiB(settledBefore.heap.heapTotal, settledAfter.heap.heapTotal),
        },
      }
      const r = idle[mode]
      const q = r.settled
      console.log(
        `idle ${mode.padEnd(6)} ${n} connections (proxy counts ${counted}), opened at ${r.openPerSecond}/s, ` +
          `proxy RSS ${r.rssBeforeMiB} -> ${r.rssAfterMiB} MiB: ${r.rssPerConnectionKiB} KiB per connection ` +
          `(${r.rssFor10kMB} MB per 10,000; JS heap used ${r.heapUsedPerConnectionKiB}, allocated ${r.heapTotalPerConnectionKiB}, ` +
          `external ${r.externalPerConnectionKiB} KiB per connection)\n` +
          `  settled (V8's idle collection ${q.before && q.after ? 'seen' : 'NOT seen'}, ${q.waitedS} s): ` +
          `proxy RSS ${q.rssBeforeMiB} -> ${q.rssAfterMiB} MiB: ${q.rssPerConnectionKiB} KiB per connection ` +
          `(${q.rssFor10kMB} MB per 10,000; JS heap used ${q.heapUsedPerConnectionKiB}, allocated ${q.heapTotalPerConnectionKiB} KiB per connection)`,
      )
      closeAll(clients)
      await waitUntil(async () => (await countedByProxy(p.admin)) === 0, 30_000)
    }

    // (2) Echo throughput, interleaved rounds.
    const targets = { direct: upstreamUrl }
    const pids = { direct: upstream.proc.pid }
    for (const mode of opts.modes) {
      targets[mode] = proxies[mode].url
      pids[mode] = proxies[mode].child.proc.pid
    }
    const runs = []
    const names = Object.keys(targets)
    for (let round = 0; round < opts.rounds; round++) {
      for (const i of names.keys()) {
        const target = names[(i + round) % names.length]
        await echoLoad(targets[target], opts, 1)
        const cpuBefore = cpuMs(pids[target])
        const r = await echoLoad(targets[target], opts, opts.duration)
        const cpuAfter = cpuMs(pids[target])
        r.cpuUsPerMessage =
          target === 'direct' || cpuBefore === undefined ? undefined : ((cpuAfter - cpuBefore) * 1000) / r.messages
        runs.push({ round, target, ...r })
        console.log(
          `round ${round + 1}/${opts.rounds} ${target.padEnd(6)} ${r.perSecond.toFixed(0).padStart(7)} msg/s` +
            (r.cpuUsPerMessage === undefined ? '' : `  proxy cpu ${r.cpuUsPerMessage.toFixed(1)} us/msg`),
        )
      }
    }
    const summary = {}
    for (const t of names) {
      const mine = runs.filter((r) => r.target === t)
      summary[t] = {
        perSecond: Math.round(median(mine.map((r) => r.perSecond))),
        cpuUsPerMessage: t === 'direct' ? undefined : +median(mine.map((r) => r.cpuUsPerMessage)).toFixed(1),
      }
    }
    for (const t of opts.modes)
      summary[t].ratioToDirect = +(summary[t].perSecond / summary.direct.perSecond).toFixed(3)
    const result = { machine: info, loadavgAfter: machine().loadavg, options: opts, fdLimit, idle, runs, summary }
    const file = join(outDir, `websocket-${info.date.replace(/[:.]/g, '-')}.json`)
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
    console.log(`\nresults: ${file}\n`)
    console.log('| target | msg/s (median) | ratio to direct | proxy CPU us/msg |')
    console.log('| --- | ---: | ---: | ---: |')
    for (const t of names)
      console.log(
        `| ${t} | ${summary[t].perSecond} | ${summary[t].ratioToDirect ?? 1} | ${summary[t].cpuUsPerMessage ?? '-'} |`,
      )
  } finally {
    await stopAll()
  }
}

function sluiceConfig(upstream, mode) {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: 'bench-token' },
    versions: { blue: { instances: [{ url: upstream }] } },
    websocket: { mode },
    log: { level: 'info' },
  }
}

/** Opens `n` client WebSockets, `concurrency` handshakes at a time (the listen backlog is finite). */
async function openMany(url, n, concurrency) {
  const out = []
  let next = 0
  const worker = async () => {
    while (next < n) {
      next++
      out.push(await openOne(url))
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return out
}

function openOne(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

function closeAll(clients) {
  for (const ws of clients) ws.close()
}

/**
 * `connections` sockets, each keeping `window` echo messages in flight: a
 * reply sends the next message. Counts replies for `seconds`.
 */
async function echoLoad(url, opts, seconds) {
  const clients = await openMany(url, opts.connections, opts.connections)
  const payload = Buffer.alloc(opts.size, 0x61)
  let replies = 0
  let running = true
  for (const ws of clients) {
    ws.on('message', () => {
      replies++
      if (running) ws.send(payload)
    })
    for (let i = 0; i < opts.window; i++) ws.send(payload)
  }
  const t0 = performance.now()
  await sleep(seconds * 1000)
  const counted = replies
  const elapsed = (performance.now() - t0) / 1000
  running = false
  closeAll(clients)
  await sleep(200)
  return { seconds: elapsed, messages: counted, perSecond: counted / elapsed }
}

/** The proxy's heap from its own /metrics (prom-client's process metrics), in bytes. */
async function proxyMemory(adminUrl) {
  const res = await fetch(`${adminUrl}/metrics`, { headers: { authorization: 'Bearer bench-token' } })
  const text = await res.text()
  const read = (name) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1])
  return {
    heapUsed: read('nodejs_heap_size_used_bytes'),
    heapTotal: read('nodejs_heap_size_total_bytes'),
    external: read('nodejs_external_memory_bytes'),
    newSpace: Number(/^nodejs_heap_space_size_total_bytes\{space="new"\} (\S+)$/m.exec(text)?.[1]),
  }
}

/**
 * The proxy's RSS and heap once V8 has done what it does to a heap that stopped growing, with nothing
 * forced from outside (as bench/soak.js waits): its memory reducer (a timer that finds the allocation
 * rate low, or its watchdog) runs mark-compacts that drop the handshakes' garbage and shrink the young
 * generation to its minimum. Read right after the connections opened, RSS still holds that garbage and
 * whatever young generation the opening burst grew, which swings between runs of the same build.
 * `afterGrowth`: a mark-compact must be seen first (after the opening burst); before it (a proxy
 * that has only started) a minimal young generation is enough.
 */
async function settled(pid, adminUrl, afterGrowth) {
  const start = Date.now()
  const majors = afterGrowth ? await majorGcs(adminUrl) : 0
  let done = false
  while (!done && Date.now() - start < (afterGrowth ? 150_000 : 30_000)) {
    await sleep(1000)
    const m = await proxyMemory(adminUrl)
    done = m.newSpace <= 2 * 2 ** 20 && (!afterGrowth || (await majorGcs(adminUrl)) > majors)
  }
  // The reducer's later collections follow 500 ms apart.
  if (done) await sleep(3000)
  return { done, waitedS: Math.round((Date.now() - start) / 1000), rssKiB: rssKiB(pid), heap: await proxyMemory(adminUrl) }
}

/** How many mark-compact collections V8 has run in the proxy (prom-client's GC histogram). */
async function majorGcs(adminUrl) {
  const res = await fetch(`${adminUrl}/metrics`, { headers: { authorization: 'Bearer bench-token' } })
  return Number(/^nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)$/m.exec(await res.text())?.[1] ?? Number.NaN)
}

async function countedByProxy(adminUrl) {
  const res = await fetch(`${adminUrl}/v1/state`, { headers: { authorization: 'Bearer bench-token' } })
  const state = await res.json()
  return Object.values(state.versions).reduce((n, v) => n + v.websockets, 0)
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : Number.NaN
}

async function waitUntil(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(200)
  }
  throw new Error('timed out')
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms))
}
