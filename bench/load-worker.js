// One autocannon run in a process of its own, so that two runs loading two targets at the same
// time (the mirroring bench's side-by-side rounds) never wait behind each other's callbacks.
// (Not a worker thread: autocannon takes itself for one of its own workers there.)
//   node bench/load-worker.js '<autocannon options as JSON, plus "keys": N>'
// With `keys`, the requests are stickyRequests(keys) (built here: a list of thousands of requests
// would not fit in one command-line argument). Prints the figures the benches compare, and its
// own CPU time for the run, as one JSON line.
import autocannon from 'autocannon'
import { stickyRequests } from './lib.js'

const { keys, ...options } = JSON.parse(process.argv[2])
if (keys !== undefined) options.requests = stickyRequests(keys)
const before = process.cpuUsage()
const r = await autocannon(options)
const cpu = process.cpuUsage(before)
process.stdout.write(
  `${JSON.stringify({
    rps: r.requests.total / r.duration,
    total: r.requests.total,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    cpuUs: cpu.user + cpu.system,
  })}\n`,
)
