// gRPC bench: unary calls per second through sluice (h2c listener, h2c
// upstream) against the same grpc-js server called directly, in interleaved
// rounds (the order rotating each round), reporting medians and the ratio.
// The upstream and sluice run in their own processes; the grpc-js load loop
// runs here: --concurrency calls in flight on --channels client channels.
//   npm run build && node bench/grpc.js
// Flags: --duration S (per round, default 5), --rounds N (3), --concurrency N
// (64), --channels N (4), --size BYTES (request payload, 64), --proxy-node-args
// "ARGS" (node flags for sluice, e.g. "--cpu-prof --cpu-prof-dir=bench/out/prof").
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import { cpuMs, machine, median, parseFlags, startChild } from './lib.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'bench', 'out')
const flags = parseFlags(
  { role: '', duration: 5, rounds: 3, concurrency: 64, channels: 4, size: 64, 'proxy-node-args': '' },
  'usage: npm run bench:grpc -- [--duration S] [--rounds N] [--concurrency N] [--channels N] [--size BYTES] ' +
    '[--proxy-node-args "ARGS"]',
)

const raw = (b) => b
const SERVICE = {
  echo: {
    path: '/bench.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
}

if (flags.role === 'upstream') {
  // The upstream: a grpc-js server answering each call with its request bytes.
  const server = new grpc.Server()
  server.addService(SERVICE, { echo: (call, cb) => cb(null, call.request) })
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err
    process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`)
  })
} else {
  await main()
}

async function main() {
  const info = machine()
  console.log(`node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.platform}, ${info.date}`)
  console.log(`load average before: ${info.loadavg.join(' ')}`)
  await mkdir(outDir, { recursive: true })
  const upstream = startChild('upstream', [fileURLToPath(import.meta.url), '--role', 'upstream'])
  let sluice
  try {
    const { port: upstreamPort } = await upstream.ready
    const config = join(outDir, 'sluice-grpc.json')
    await writeFile(
      config,
      JSON.stringify(
        {
          listen: { host: '127.0.0.1', port: 0, http2: true },
          admin: { host: '127.0.0.1', port: 0 },
          versions: { blue: { protocol: 'h2c', instances: [{ url: `http://127.0.0.1:${upstreamPort}` }] } },
          log: { level: 'warn' },
        },
        null,
        2,
      ),
    )
    sluice = startChild('sluice', [join(root, 'dist/cli/main.js'), 'serve', '--config', config], {
      execArgv: flags['proxy-node-args'].split(' ').filter(Boolean),
    })
    const { port: sluicePort } = await sluice.ready
    const targets = { direct: `127.0.0.1:${upstreamPort}`, sluice: `127.0.0.1:${sluicePort}` }
    const payload = Buffer.alloc(flags.size, 120)
    // Warm both paths (connections, JIT) before measuring.
    for (const target of Object.values(targets)) await load(target, payload, 1)
    const rates = { direct: [], sluice: [] }
    let sluiceCpu = 0
    let sluiceCalls = 0
    for (let round = 1; round <= flags.rounds; round++) {
      // The order rotates every round, so neither target always runs first after the other's load.
      for (const name of round % 2 === 1 ? ['direct', 'sluice'] : ['sluice', 'direct']) {
        const cpuBefore = name === 'sluice' ? cpuMs(sluice.proc.pid) : 0
        const r = await load(targets[name], payload, flags.duration)
        if (name === 'sluice') {
          sluiceCpu += cpuMs(sluice.proc.pid) - cpuBefore
          sluiceCalls += r.calls
        }
        rates[name].push(r.calls / r.seconds)
        console.log(`round ${round} ${name}: ${Math.round(r.calls / r.seconds)} calls/s, ${r.errors} errors`)
      }
    }
    const direct = median(rates.direct)
    const through = median(rates.sluice)
    const pairs = rates.sluice.map((s, i) => (s / rates.direct[i]).toFixed(2))
    console.log(`median direct ${Math.round(direct)} calls/s, through sluice ${Math.round(through)} calls/s`)
    console.log(`ratio sluice/direct ${(through / direct).toFixed(2)} (per-round pairs ${pairs.join(', ')})`)
    console.log(`sluice CPU per call ${((sluiceCpu * 1000) / sluiceCalls).toFixed(1)} µs`)
    console.log(`load average after: ${machine().loadavg.join(' ')}`)
  } finally {
    await sluice?.stop()
    await upstream.stop()
  }
}

/** Unary calls for `seconds` with flags.concurrency in flight over flags.channels channels. */
async function load(target, payload, seconds) {
  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Echo')
  const clients = Array.from(
    { length: flags.channels },
    () => new Client(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
  )
  const end = performance.now() + seconds * 1000
  let calls = 0
  let errors = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: flags.concurrency }, (_, i) => {
      const client = clients[i % clients.length]
      return (async () => {
        while (performance.now() < end) {
          await new Promise((resolve) =>
            client.echo(payload, (err) => {
              if (err) errors++
              else calls++
              resolve()
            }),
          )
        }
      })()
    }),
  )
  const elapsed = (performance.now() - started) / 1000
  for (const c of clients) c.close()
  return { calls, errors, seconds: elapsed }
}
