// Shared pieces of the benches (bench/README.md): strict flags, HDR percentiles, child processes that announce
// their ports with a JSON "listening" line on stdout, medians, machine facts.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import hdr from 'hdr-histogram-js'

let usageLine = 'usage: node bench/<script>.js [flags]'

/**
 * The bench's flags through node:util parseArgs, strict: an unknown flag, a flag without its value or a
 * number that does not parse prints the error and the usage line and exits 2 (a mistyped `--duraton`
 * must not run a 5-minute bench with the default). `spec` maps each flag to its default, whose type is
 * the flag's: a number (answered as a number), a string, or false (a switch). `--name value` is read as
 * `--name=value`, so a value may start with a dash (`--proxy-node-args "--cpu-prof"`). --help prints
 * the usage line and exits 0. With `positionals`, arguments that are not flags are answered in `_`.
 */
export function parseFlags(spec, usage, { args = process.argv.slice(2), positionals = false } = {}) {
  usageLine = usage
  const options = { help: { type: 'boolean', default: false } }
  for (const [name, fallback] of Object.entries(spec))
    options[name] = typeof fallback === 'boolean' ? { type: 'boolean', default: fallback } : { type: 'string' }
  const joined = []
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith('--') && !args[i].includes('=') ? args[i].slice(2) : undefined
    if (options[name]?.type === 'string' && i + 1 < args.length) joined.push(`${args[i]}=${args[++i]}`)
    else joined.push(args[i])
  }
  let parsed
  try {
    parsed = parseArgs({ args: joined, options, strict: true, allowPositionals: positionals })
  } catch (err) {
    if (!String(err.code).startsWith('ERR_PARSE_ARGS')) throw err
    usageError(err.message)
  }
  if (parsed.values.help) {
    console.log(usage)
    process.exit(0)
  }
  const out = { _: parsed.positionals }
  for (const [name, fallback] of Object.entries(spec)) {
    const given = parsed.values[name]
    if (typeof fallback !== 'number') out[name] = given ?? fallback
    else if (given === undefined) out[name] = fallback
    else if (given.trim() === '' || !Number.isFinite(Number(given))) usageError(`--${name} wants a number, got '${given}'`)
    else out[name] = Number(given)
  }
  return out
}

/** A number from the environment (the deploy and rollback benches' settings), or exit 2 with the usage line. */
export function envNumber(name, fallback) {
  const given = process.env[name]
  if (given === undefined || given === '') return fallback
  if (!Number.isFinite(Number(given))) usageError(`${name} wants a number, got '${given}'`)
  return Number(given)
}

/** A wrong flag or setting: the message and the usage line on stderr, exit 2. */
export function usageError(message) {
  console.error(`${message}\n${usageLine}`)
  process.exit(2)
}

/**
 * An HDR histogram for latencies recorded in microseconds (1 us to 10 min, 3 significant digits):
 * the benches' percentiles come from it (`percentileMs`), never from sorting by hand.
 */
export function latencyHistogram() {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 })
}

/** Records a latency given in milliseconds (fractions kept to the microsecond). */
export function recordMs(h, ms) {
  h.recordValue(Math.max(1, Math.round(ms * 1000)))
}

/** The latency at `percentile` (0-100) in milliseconds, or NaN when nothing was recorded. */
export function percentileMs(h, percentile) {
  return h.totalCount === 0 ? Number.NaN : h.getValueAtPercentile(percentile) / 1000
}

/**
 * Runs `node ...args` and resolves with the first stdout JSON line whose msg
 * is "listening" (the same line `sluice serve` logs). Later stdout is drained
 * so a chatty child never blocks on a full pipe.
 */
export function startChild(label, args, { execArgv = [], timeoutMs = 15_000 } = {}) {
  const proc = spawn(process.execPath, [...execArgv, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: no "listening" line within ${timeoutMs} ms`)), timeoutMs)
    exited.then(({ code, signal }) => reject(new Error(`${label} exited early (code ${code}, signal ${signal})`)))
    createInterface({ input: proc.stdout }).on('line', (line) => {
      let msg
      try {
        msg = JSON.parse(line)
      } catch {
        return
      }
      if (msg?.msg !== 'listening') return
      clearTimeout(timer)
      resolve(msg)
    })
  })
  return {
    label,
    proc,
    ready,
    /** SIGTERM, then SIGKILL if it has not exited after graceMs. */
    async stop(graceMs = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
      const result = await exited
      clearTimeout(timer)
      return result
    },
  }
}

/**
 * Pins every thread of `pid` to the given CPUs with taskset (util-linux).
 * Returns false when that cannot be done here (no taskset, not Linux).
 */
export function pin(pid, cpus) {
  const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
  return r.status === 0
}

const CGROUP_V2 = '/sys/fs/cgroup'
const CGROUP_V1_CPU = '/sys/fs/cgroup/cpu'
/** CFS period of the quotas: short, so a throttled process waits at most a few ms at a time. */
const QUOTA_PERIOD_US = 10_000

/**
 * Caps `pid` at `fraction` of one CPU with a CFS quota in a new cgroup named
 * `name` (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`; needs root on
 * Linux). Answers a function that removes the cgroup once the process has
 * exited, or undefined when no cgroup could be made here.
 */
export function limitCpu(pid, fraction, name) {
  const v2 = existsSync(`${CGROUP_V2}/cgroup.controllers`) &&
    readFileSync(`${CGROUP_V2}/cgroup.controllers`, 'utf8').split(/\s+/).includes('cpu')
  const dir = v2 ? `${CGROUP_V2}/${name}` : `${CGROUP_V1_CPU}/${name}`
  const quota = String(Math.round(fraction * QUOTA_PERIOD_US))
  try {
    mkdirSync(dir, { recursive: true })
    if (v2) writeFileSync(`${dir}/cpu.max`, `${quota} ${QUOTA_PERIOD_US}`)
    else {
      writeFileSync(`${dir}/cpu.cfs_period_us`, String(QUOTA_PERIOD_US))
      writeFileSync(`${dir}/cpu.cfs_quota_us`, quota)
    }
    writeFileSync(`${dir}/cgroup.procs`, String(pid))
  } catch {
    return undefined
  }
  return () => {
    try {
      rmdirSync(dir)
    } catch {
      // Still in use or already gone: left for the next run's mkdir to reuse.
    }
  }
}

/**
 * The benches' keyed traffic: GET /api/items, one request per sticky
 * x-user-id key, prebuilt (no setupRequest) so autocannon does not rebuild a
 * request per send; each connection cycles through every key.
 */
export function stickyRequests(keys) {
  return Array.from({ length: keys }, (_, i) => ({
    method: 'GET',
    path: '/api/items',
    headers: { 'x-user-id': `user-${(i * 7919) % 100_003}` },
  }))
}

/**
 * `sluice serve` (dist/ under `root`) in a child process, on a temporary JSON
 * config with loopback listeners, the blue and green upstreams of `ups` and
 * `settings` (weights, health, outlier...), Node flags `execArgv` (a primary's workers inherit them);
 * resolves once /readyz answers 200.
 */
export async function serveBlueGreen(root, ups, token, settings, execArgv = []) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'))
  const configFile = join(dir, 'sluice.json')
  writeFileSync(
    configFile,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token },
      versions: {
        blue: { instances: ups.blue.map((u) => ({ url: u.url })) },
        green: { instances: ups.green.map((u) => ({ url: u.url })) },
      },
      ...settings,
    }),
  )
  const proxy = startChild('sluice', [join(root, 'dist/cli/main.js'), 'serve', '--config', configFile], { execArgv })
  const stop = async () => {
    await proxy.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const { port, adminPort } = await proxy.ready
    const adminUrl = `http://127.0.0.1:${adminPort}`
    await until200(`${adminUrl}/readyz`)
    return { proxy, url: `http://127.0.0.1:${port}`, adminUrl, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Waits until `url` answers 200 (a sticky key set), or throws after 15 s. */
export async function until200(url) {
  const deadline = Date.now() + 15_000
  for (;;) {
    const res = await fetch(url, { headers: { 'x-user-id': 'probe' } }).catch(() => undefined)
    await res?.arrayBuffer()
    if (res?.status === 200) return
    if (Date.now() > deadline) throw new Error(`${url} never answered 200 (last status ${res?.status})`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/**
 * The median of a handful of per-round figures (exact: the two middles averaged). Latency distributions
 * go through latencyHistogram instead.
 */
export function median(values) {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** What a result is only comparable with: printed and stored with every run. */
export function machine() {
  const cpu = cpus()
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpu: cpu[0]?.model?.trim() ?? 'unknown',
    cores: cpu.length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    loadavg: loadavg().map((x) => Number(x.toFixed(2))),
  }
}

let ticksPerSecond
/**
 * CPU time (user + system, ms) a process has used, from /proc (Linux), or
 * undefined elsewhere. On a shared machine, CPU per request stays meaningful
 * when requests per second swing with other processes' load.
 */
export function cpuMs(pid) {
  try {
    ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond
  } catch {
    return undefined
  }
}

/** Prints the machine facts every run starts with, and answers them. */
export function announce() {
  const info = machine()
  console.log(`node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.platform}, ${info.date}`)
  console.log(`load average before: ${info.loadavg.join(' ')}`)
  return info
}

/**
 * The demo blue and green upstreams (bench/upstream.js, one child process),
 * registered in `children` for the caller's cleanup. Answers their URLs.
 */
export async function startBlueGreen(root, children, bodyBytes, extraArgs = []) {
  const upstream = startChild('upstream', [
    `${root}/bench/upstream.js`,
    'blue',
    'green',
    '--body-bytes',
    `${bodyBytes}`,
    ...extraArgs,
  ])
  children.push(upstream)
  const { ports } = await upstream.ready
  return { upstream, blue: `http://127.0.0.1:${ports.blue}`, green: `http://127.0.0.1:${ports.green}` }
}

/** Resident set size of `pid` in KiB (VmRSS from /proc, Linux), or undefined when it cannot be read. */
export function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/**
 * `sluice serve` (from dist/) in front of one upstream: one version, one instance, token-protected
 * admin, config written to `configPath`. Registered in `children`; answers the child and its URL.
 */
export async function startSluiceFor(root, children, upstream, configPath, execArgv = []) {
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: 'bench-token' },
    versions: { app: { instances: [{ url: upstream }] } },
    log: { level: 'info' },
  }
  writeFileSync(configPath, JSON.stringify(config))
  const child = startChild('sluice', [`${root}/dist/cli/main.js`, 'serve', '--config', configPath], { execArgv })
  children.push(child)
  return { child, url: `http://127.0.0.1:${(await child.ready).port}` }
}

/**
 * Calls `one(i)` for i = 0..total-1 at `rate` per second: every millisecond tick starts what is due
 * (a late timer catches up, nothing is skipped). Resolves once every promise `one` returned settled.
 */
export function pace(rate, total, one) {
  return new Promise((resolve) => {
    if (total === 0) return resolve()
    const start = performance.now()
    let sent = 0
    let settled = 0
    const done = () => {
      if (++settled === total) resolve()
    }
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1)
      while (sent < due) one(sent++).then(done, done)
      if (sent < total) setTimeout(tick, 1)
    }
    tick()
  })
}
