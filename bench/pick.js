// Micro bench of the routing table's per-request pick and its rebuild cost.
//   npm run bench:pick                      (builds, then runs on dist/)
//   node bench/pick.js --dist /tmp/old/dist (the same bench on another build, e.g. the previous commit's)
// Pick: blue/green at 90/10, n/2 instances each, 4,096 sticky keys, chooseVersion + chooseInstance
// per request (sticky, then keyless), after a warm-up that has filled the sticky buckets.
// Rebuild: what one routing table rebuild costs at 2,000 instances (the event loop is blocked that long):
// CPU time (on a shared machine the wall time also holds the waits for a core), and wall time.
// Flags: --instances 2,20,200,2000  --picks 2000000  --rounds 5  --dist DIR
import { cpus } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseFlags, usageError } from './lib.js'

const flags = parseFlags(
  { instances: '2,20,200,2000', picks: 2_000_000, rounds: 5, dist: 'dist' },
  'usage: npm run bench:pick -- [--instances 2,20,200,2000] [--picks N] [--rounds N] [--dist DIR]',
)
const counts = flags.instances.split(',').map(Number)
if (!counts.every((n) => Number.isInteger(n) && n >= 2)) usageError('--instances wants whole numbers >= 2, comma-separated')
const picks = flags.picks
const rounds = flags.rounds
const distArg = flags.dist
const dist = isAbsolute(distArg) ? distArg : resolve(import.meta.dirname, '..', distArg)
const { RoutingTable, NO_KEY } = await import(pathToFileURL(join(dist, 'routing/table.js')).href)
const { Instance, Version } = await import(pathToFileURL(join(dist, 'routing/instance.js')).href)
const { hashString } = await import(pathToFileURL(join(dist, 'routing/hash.js')).href)

const cpu = cpus()
console.log(`node ${process.version}, ${cpu[0]?.model?.trim() ?? 'unknown cpu'}, ${cpu.length} cores, ${dist}`)

const keys = Array.from({ length: 4096 }, (_, i) => hashString(`user-${i}`))
const NOW = 1_000_000_000

function makeVersions(n) {
  let port = 10000
  return ['blue', 'green'].map((name, index) => {
    const v = new Version(name, index)
    for (let i = 0; i < Math.max(1, n / 2); i++) v.instances.push(new Instance(`http://10.0.${port >> 8}.${port++ & 255}:8080`, v, true))
    return v
  })
}

function table(versions, previous, extra = {}) {
  return new RoutingTable({
    versions,
    weights: { blue: 90, green: 10 },
    sticky: [{ kind: 'header', name: 'x-user-id' }],
    overrides: [],
    revision: 1,
    now: NOW,
    previous,
    ...extra,
  })
}

let sink = 0
function stickyLoop(t, count) {
  for (let i = 0; i < count; i++) {
    const key = keys[i & 4095]
    const route = t.chooseVersion({}, key)
    sink += t.chooseInstance(route, key).seed & 1
  }
}
function keylessLoop(t, count) {
  for (let i = 0; i < count; i++) {
    const route = t.chooseVersion({}, NO_KEY)
    sink += t.chooseInstance(route, NO_KEY).seed & 1
  }
}

/** Median ns per pick over `rounds` timed runs of `count` picks. */
function time(loop, t, count) {
  const runs = []
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint()
    loop(t, count)
    runs.push(Number(process.hrtime.bigint() - t0) / count)
  }
  return runs.sort((a, b) => a - b)[rounds >> 1]
}

console.log('\n| instances | sticky pick (ns) | keyless pick (ns) |')
console.log('| ---: | ---: | ---: |')
for (const n of counts) {
  const versions = makeVersions(n)
  const t = table(versions)
  // Enough warm-up for the JIT, and for the old code's scan to be as warm as the new one's table.
  const picksHere = n >= 2000 ? Math.min(picks, 200_000) : picks
  stickyLoop(t, Math.min(picksHere, 500_000))
  keylessLoop(t, Math.min(picksHere, 500_000))
  const sticky = time(stickyLoop, t, picksHere)
  const keyless = time(keylessLoop, t, picksHere)
  console.log(`| ${n.toLocaleString('en')} | ${sticky.toFixed(0)} | ${keyless.toFixed(0)} |`)
}

// ---- rebuild cost at 2,000 instances (1,000 per version) ----
// Only for builds with bucket tables (the old table scanned on every pick and rebuilt in O(instances)).
if (table(makeVersions(2)).routes[0].sticky === undefined) process.exit(0)
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6
let cpuMs = 0
/** Runs fn `times` times; fn answers its wall ms and sets cpuMs for the part it timed. */
function measure(label, fn, times = Math.max(rounds, 21)) {
  const wall = []
  const cpu = []
  for (let r = 0; r < times; r++) {
    wall.push(fn())
    cpu.push(cpuMs)
  }
  const med = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1].toFixed(2)
  const max = (xs) => Math.max(...xs).toFixed(2)
  console.log(`| ${label} | ${med(cpu)} | ${max(cpu)} | ${med(wall)} |`)
}
/** Times fn: answers wall ms, leaves CPU ms in cpuMs. */
function timed(fn) {
  const c0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  fn()
  const wall = ms(t0)
  const c = process.cpuUsage(c0)
  cpuMs = (c.user + c.system) / 1000
  return wall
}
const versions = makeVersions(2000)
let current = table(versions)
/** Every bucket of both versions answered once, so updates have a full table to keep right. */
function fillAll(t) {
  for (const r of t.routes) for (let b = 0; b < 65536; b++) t.chooseInstance(r, (b * 65536 + 12345) >>> 0)
}
const rebuild = (extra) =>
  timed(() => {
    current = table(versions, current, extra)
  })
console.log('\n| rebuild at 2,000 instances | CPU ms median | CPU ms max | wall ms median |')
console.log('| --- | ---: | ---: | ---: |')
measure(
  'first table, then every bucket of both versions computed (spread over first picks)',
  () =>
    timed(() => {
      current = table(versions)
      fillAll(current)
    }),
  3,
)
const blue = versions[0]
measure('nothing changed (weights, a drain elsewhere)', () => rebuild())
const drain = (on) => {
  blue.instances[7].draining = on
  return rebuild()
}
measure('one instance leaves (drained, ejected, unhealthy)', () => {
  const t = drain(true)
  const c = cpuMs
  drain(false)
  cpuMs = c
  return t
})
measure('one instance joins', () => {
  drain(true)
  return drain(false)
})
// Slow start: one instance ramping among warm ones, a rebuild every 250 ms of a 30 s ramp.
const slow = { slowStartMs: 30_000 }
/** The rebuild of a 250 ms tick that ends `ms` into the ramp. */
const rampTick = (ms) => {
  blue.instances[9].usableSince = NOW - ms + 250
  rebuild(slow)
  blue.instances[9].usableSince = NOW - ms
  const t = rebuild(slow)
  const c = cpuMs
  blue.instances[9].usableSince = 0
  rebuild(slow)
  cpuMs = c
  return t
}
measure('slow start, 250 ms tick, no tenth crossed', () => rampTick(10_350))
measure('slow start, 250 ms tick crossing a tenth', () => rampTick(12_150))
measure('a whole version of 1,000 undrained at once (buckets cleared, computed on first pick)', () => {
  blue.draining = true
  rebuild()
  blue.draining = false
  return rebuild()
})
if (sink === 42) console.log('')
