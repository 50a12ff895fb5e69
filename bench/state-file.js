// What `state.file` costs an admin change and a rollout transition: two
// `sluice serve` processes, one with the in-process store only ("memory"),
// one that writes every change to a state file ("file"), in interleaved
// rounds (the order alternates each round). Each round times sequential
// `PUT /v1/weights` calls and `POST /v1/rollout/pause` + `/resume` pairs
// (a rollout transition commits through the same path a step does) from the
// client's side. The audit list is filled to its bound (1000 entries) first,
// so the file is as large as it gets. Reports medians and p99 of each kind
// and the file/memory ratios.
//   npm run build && node bench/state-file.js --rounds 6 --changes 200
// Other flags: --dir DIR (where the state file goes; default bench/out), --dist DIR.
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { announce, latencyHistogram, machine, median, parseFlags, percentileMs, recordMs, startBlueGreen, startChild } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const flags = parseFlags(
  { rounds: 6, changes: 200, transitions: 50, dir: outDir, dist: join(root, 'dist') },
  'usage: npm run bench:state-file -- [--rounds N] [--changes N] [--transitions N] [--dir DIR] [--dist DIR]',
)
const opts = {
  rounds: flags.rounds,
  changes: flags.changes,
  transitions: flags.transitions,
  dir: resolve(flags.dir),
  dist: resolve(flags.dist),
}
const TOKEN = 'bench-token'
const KINDS = ['memory', 'file']

const info = announce()
await mkdir(outDir, { recursive: true })
await mkdir(opts.dir, { recursive: true })
const stateDir = await mkdtemp(join(opts.dir, 'state-file-bench-'))
const stateFile = join(stateDir, 'state.json')
const children = []
const stopAll = () => Promise.all(children.map((c) => c.stop()))
process.once('SIGINT', () => stopAll().then(() => process.exit(130)))

try {
  const { blue, green } = await startBlueGreen(root, children, 128)
  const proxies = {}
  for (const kind of KINDS) {
    const config = {
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token: TOKEN },
      versions: { blue: { instances: [{ url: blue }] }, green: { instances: [{ url: green }] } },
      weights: { blue: 100, green: 0 },
      log: { level: 'warn' },
      ...(kind === 'file' ? { state: { file: stateFile } } : {}),
    }
    const file = join(outDir, `sluice-state-file-bench-${kind}.json`)
    await writeFile(file, JSON.stringify(config, null, 2))
    const child = startChild(kind, [join(opts.dist, 'cli/main.js'), 'serve', '--config', file])
    children.push(child)
    const { adminPort } = await child.ready
    proxies[kind] = `http://127.0.0.1:${adminPort}`
  }
  // A full audit list in both: the file is as large as it gets.
  for (const kind of KINDS) await timeWeights(proxies[kind], 1000)
  const rollout = { canary: 'green', baseline: 'blue', steps: [{ weight: 10, holdMs: 3_600_000 }, { weight: 100, holdMs: 0 }] }
  for (const kind of KINDS) await call(proxies[kind], 'POST', '/v1/rollout', rollout, 201)
  const fileBytes = (await stat(stateFile)).size
  console.log(`state file ${stateFile}: ${(fileBytes / 1024).toFixed(0)} KiB with a full audit list`)

  const runs = []
  for (let round = 0; round < opts.rounds; round++) {
    for (const kind of round % 2 === 0 ? KINDS : [...KINDS].reverse()) {
      const weights = await timeWeights(proxies[kind], opts.changes)
      const transitions = await timeTransitions(proxies[kind], opts.transitions)
      runs.push({ round, kind, weights: summarise(weights), transitions: summarise(transitions) })
      const w = runs.at(-1).weights
      const t = runs.at(-1).transitions
      console.log(
        `round ${round + 1}/${opts.rounds} ${kind.padEnd(6)} PUT /v1/weights median ${w.median.toFixed(2)} ms p99 ${w.p99.toFixed(2)} ms;` +
          ` rollout transition median ${t.median.toFixed(2)} ms p99 ${t.p99.toFixed(2)} ms`,
      )
    }
  }
  const summary = {}
  for (const kind of KINDS) {
    const mine = runs.filter((r) => r.kind === kind)
    summary[kind] = {
      weightsMedian: median(mine.map((r) => r.weights.median)),
      weightsP99: median(mine.map((r) => r.weights.p99)),
      transitionMedian: median(mine.map((r) => r.transitions.median)),
      transitionP99: median(mine.map((r) => r.transitions.p99)),
    }
  }
  const perRound = (field) =>
    median(
      runs
        .filter((r) => r.kind === 'file')
        .map((r) => r[field].median / runs.find((m) => m.kind === 'memory' && m.round === r.round)[field].median),
    )
  const result = {
    machine: info,
    loadavgAfter: machine().loadavg,
    options: opts,
    fileBytes,
    runs,
    summary,
    ratio: { weights: perRound('weights'), transitions: perRound('transitions') },
  }
  const out = join(outDir, `state-file-${info.date.replace(/[:.]/g, '-')}.json`)
  await writeFile(out, `${JSON.stringify(result, null, 2)}\n`)
  console.log(`\nresults: ${out}\n`)
  console.log(
    [
      '| store | PUT /v1/weights median ms | p99 ms | rollout transition median ms | p99 ms |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...KINDS.map(
        (k) =>
          `| ${k} | ${summary[k].weightsMedian.toFixed(2)} | ${summary[k].weightsP99.toFixed(2)} | ${summary[k].transitionMedian.toFixed(2)} | ${summary[k].transitionP99.toFixed(2)} |`,
      ),
      '',
      `file / memory, median of per-round ratios of medians: PUT /v1/weights ${result.ratio.weights.toFixed(2)}, ` +
        `rollout transition ${result.ratio.transitions.toFixed(2)}; state file ${(fileBytes / 1024).toFixed(0)} KiB. ` +
        `Load average before ${info.loadavg.join(' ')}, after ${result.loadavgAfter.join(' ')}.`,
    ].join('\n'),
  )
} finally {
  await stopAll()
  await rm(stateDir, { recursive: true, force: true })
}

async function call(adminUrl, method, path, body, expected = 200) {
  const res = await fetch(adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  if (res.status !== expected) throw new Error(`${method} ${path}: ${res.status} ${text}`)
}

/** Milliseconds of each of `n` sequential weight changes. */
async function timeWeights(adminUrl, n) {
  const out = []
  for (let i = 0; i < n; i++) {
    const green = i % 2 === 0 ? 10 : 20
    const t0 = performance.now()
    await call(adminUrl, 'PUT', '/v1/weights', { blue: 100 - green, green })
    out.push(performance.now() - t0)
  }
  return out
}

/** Milliseconds of each of `n` pause and resume calls (2n transitions). */
async function timeTransitions(adminUrl, n) {
  const out = []
  for (let i = 0; i < n; i++) {
    for (const command of ['pause', 'resume']) {
      const t0 = performance.now()
      await call(adminUrl, 'POST', `/v1/rollout/${command}`)
      out.push(performance.now() - t0)
    }
  }
  return out
}

function summarise(ms) {
  const h = latencyHistogram()
  for (const x of ms) recordMs(h, x)
  return { median: percentileMs(h, 50), p99: percentileMs(h, 99) }
}
