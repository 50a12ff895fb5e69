import { pino } from 'pino'
import { buildConfig } from '../config/load.js'
import { runSluice } from '../lifecycle/run.js'
import { scanArgs } from './args.js'
import { demoEventLine } from './demo-events.js'
import { type DemoUpstream, startDemoUpstream } from './demo-upstream.js'
import { logOptions } from './log.js'
import { DEMO_USAGE } from './usage.js'

const LAYOUT: [version: string, instances: number][] = [
  ['blue', 2],
  ['green', 2],
  ['canary', 1],
]


const DEMO_FLAGS = {
  port: { type: 'string', value: 'a port' },
  'admin-port': { type: 'string', value: 'a port' },
} as const

function portOf(value: string | boolean | undefined, fallback: number): number | undefined {
  if (value === undefined) return fallback
  const n = Number(value)
  return typeof value === 'string' && /^\d{1,5}$/.test(value) && n <= 65535 ? n : undefined
}

/**
 * `sluice demo`: five demo instances (blue x2, green x2, canary x1) on
 * loopback, the proxy in front with traffic on blue and green, no Redis and
 * no config file. Runs until Ctrl-C.
 */
export async function runDemo(args: string[]): Promise<number> {
  const scanned = scanArgs(args, DEMO_FLAGS)
  const port = scanned.ok ? portOf(scanned.flags['port'], 8080) : undefined
  const adminPort = scanned.ok ? portOf(scanned.flags['admin-port'], 9901) : undefined
  if (port === undefined || adminPort === undefined) {
    process.stderr.write(`${scanned.ok ? 'a port is a whole number from 0 to 65535' : scanned.message}\n${DEMO_USAGE}`)
    return 2
  }
  const upstreams: DemoUpstream[] = []
  const versions: Record<string, { instances: { url: string }[] }> = {}
  for (const [version, n] of LAYOUT) {
    versions[version] = { instances: [] }
    for (let i = 1; i <= n; i++) {
      const u = await startDemoUpstream(version, `${version}-${i}`)
      upstreams.push(u)
      versions[version].instances.push({ url: u.url })
    }
  }
  const raw = (p: number, ap: number) => ({
    listen: { host: '127.0.0.1', port: p },
    admin: { host: '127.0.0.1', port: ap },
    versions,
    weights: { blue: 80, green: 20 },
    sticky: { keys: ['header:x-user-id', 'cookie:session'] },
    overrides: [{ match: { header: 'x-canary', value: 'true' }, version: 'canary' }],
    health: { path: '/healthz', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 2 },
    analysis: { intervalMs: 1000, windowMs: 30000, minRequests: 50 },
    rollout: {
      baseline: 'blue',
      canary: 'green',
      steps: [
        { weight: 25, holdMs: 10000 },
        { weight: 50, holdMs: 10000 },
        { weight: 100, holdMs: 0 },
      ],
    },
    log: { level: 'info' },
  })
  // The proxy's log lines become the terminal's live view once the banner is out.
  let live = false
  const log = pino(logOptions('info'), {
    write(line: string) {
      const shown = live ? demoEventLine(line) : undefined
      if (shown !== undefined) process.stdout.write(shown)
    },
  })
  let running: Awaited<ReturnType<typeof runSluice>>
  try {
    running = await runSluice(buildConfig(raw(port, adminPort), undefined), { log })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    // Ports taken (a second demo, or something else on 8080): take free ones.
    running = await runSluice(buildConfig(raw(0, 0), undefined), { log })
  }
  const url = `http://127.0.0.1:${running.port}`
  const admin = `http://127.0.0.1:${running.adminPort}`
  process.stdout.write(`
sluice demo is running

  proxy        ${url}
  admin API    ${admin}   (status page: ${admin}/ , no token needed in the demo)
  versions     blue x2, green x2, canary x1 on loopback; weights blue 80, green 20

Try:
  for i in $(seq 10); do curl -s ${url}/; done          # split by weight across versions
  curl -s -H 'x-user-id: alice' ${url}/                 # sticky: alice always gets the same version
  curl -s -b 'session=s-42' ${url}/                     # sticky by cookie
  curl -s -H 'x-canary: true' ${url}/                   # override: straight to canary
  curl -s ${admin}/v1/state                             # live state (JSON)

Change weights and roll out (in another terminal):
  export SLUICE_ADMIN_URL=${admin}
  npx sluice ctl state
  npx sluice ctl weights blue=50 green=50
  while true; do curl -s -o /dev/null ${url}/; done &  # steady traffic: a rollout steps only on enough samples
  npx sluice ctl rollout start green                    # 25% -> 50% -> 100% (10 s holds), watched by analysis
  npx sluice ctl rollout status --watch                 # each step as it happens; exit 0 promoted, 1 rolled back
  curl -s -X PUT -H 'content-type: application/json' -d '{"blue":0,"green":100}' ${admin}/v1/weights

Ctrl-C stops it. Changes show below as they happen:

`)
  live = true
  const stop = () => {
    running
      .stop()
      .then(() => Promise.all(upstreams.map((u) => new Promise((r) => u.server.close(r)))))
      .then(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return -1
}
