// Micro bench of the analysis pieces on the request path (window record) and
// on the interval timer (tick, figures, verdict). Run after `npm run build`:
//   node bench/micro-analysis.js
import { cpus } from 'node:os'
import { judge } from '../dist/analysis/verdict.js'
import { VersionWindow } from '../dist/analysis/version-window.js'
import { parseFlags } from './lib.js'

parseFlags({}, 'usage: npm run build && node bench/micro-analysis.js')

const cpu = cpus()
console.log(`node ${process.version}, ${cpu[0]?.model ?? 'unknown cpu'}, ${cpu.length} cores`)

function bench(name, iterations, fn) {
  for (let i = 0; i < Math.min(iterations, 200_000); i++) fn(i) // warm-up
  const runs = []
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) fn(i)
    runs.push(Number(process.hrtime.bigint() - t0) / iterations)
  }
  runs.sort((a, b) => a - b)
  console.log(`${name.padEnd(34)} median ${runs[2].toFixed(1).padStart(9)} ns/op`)
}

let t = 1_000_000
const clock = () => t
const windows = [0, 1].map(() => new VersionWindow({ windowMs: 60_000, sliceMs: 1000, now: clock }))
// latencies spread over 0.1 ms .. 1 s, precomputed so the bench measures record() alone
const latencies = Float64Array.from({ length: 4096 }, (_, i) => 0.1 * 10 ** (((i * 7919) % 4096) / 1024))

bench('window record', 5_000_000, (i) => windows[i & 1].record((i & 1023) === 0, latencies[i & 4095]))

bench('window tick (one slice rotates)', 20_000, () => {
  t += 1000
  windows[0].tick(t)
})

for (const w of windows) for (let i = 0; i < 100_000; i++) w.record((i & 255) === 0, latencies[i & 4095])
bench('window figures (p50/p95/p99)', 20_000, () => windows[0].figures())

const limits = {
  minRequests: 100,
  maxErrorRateIncrease: 0.02,
  maxP95Ratio: 1.5,
  maxP95IncreaseMs: 100,
  confidence: 0.99,
}
const [a, b] = windows.map((w) => w.figures())
bench('verdict (judge)', 200_000, () => judge(a, b, true, limits))
