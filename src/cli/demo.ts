import { pino } from 'pino'
import { buildConfig } from '../config/load.js'
import { runSluice } from '../lifecycle/run.js'
import { type DemoUpstream, startDemoUpstream } from './demo-upstream.js'

const LAYOUT: [version: string, instances: number][] = [
  ['blue', 2],
  ['green', 2],
  ['canary', 1],
]

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}

/**
 * `sluice demo`: five demo instances (blue x2, green x2, canary x1) on
 * loopback, the proxy in front with traffic on blue and green, no Redis and
 * no config file. Runs until Ctrl-C.
 */
export async function runDemo(args: string[]): Promise<number> {
  const port = Number(flag(args, '--port') ?? 8080)
  const adminPort = Number(flag(args, '--admin-port') ?? 9901)
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
    log: { level: 'error' },
  })
  const log = pino({ level: 'error' })
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
  npx sluice ctl rollout status                         # step, hold left, reason
  curl -s -X PUT -H 'content-type: application/json' -d '{"blue":0,"green":100}' ${admin}/v1/weights

Ctrl-C stops it.
`)
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
