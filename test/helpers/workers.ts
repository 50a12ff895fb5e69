import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildOnce, type ServeProcess, startServe } from './cli.js'
import { TEST_TOKEN } from './proxy.js'

export interface WorkersProxy {
  readonly serve: ServeProcess
  readonly url: string
  readonly adminUrl: string
  /** The config file (rewrite it to test a restart with a new config). */
  readonly file: string
  /** Writes `raw` over the config file. */
  rewrite(raw: Record<string, unknown>): void
  /** SIGKILL to the primary (workers follow it) and the temporary directory removed. */
  close(): Promise<void>
}

/** `sluice serve` of the built CLI with `raw` as its config (JSON): listen/admin on loopback port 0, the test token. */
export async function startWorkers(raw: Record<string, unknown>, args: string[] = []): Promise<WorkersProxy> {
  await buildOnce()
  const dir = mkdtempSync(join(tmpdir(), 'sluice-workers-'))
  const file = join(dir, 'sluice.json')
  const full = (r: Record<string, unknown>) => ({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: TEST_TOKEN },
    ...r,
  })
  writeFileSync(file, JSON.stringify(full(raw)))
  let serve: ServeProcess
  try {
    serve = await startServe(file, {}, args)
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return {
    serve,
    url: serve.url,
    adminUrl: `http://127.0.0.1:${serve.adminPort}`,
    file,
    rewrite(r) {
      writeFileSync(file, JSON.stringify(full(r)))
    },
    async close() {
      await serve.stop('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** One GET on a connection of its own: a new connection each time, so the primary hands each to the next worker. */
export function freshGet(url: string): Promise<{ status: number; upstream: string | undefined } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.resume()
      res.on('end', () => {
        const u = res.headers['x-upstream']
        resolve({ status: res.statusCode!, upstream: typeof u === 'string' ? u : undefined })
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }))
    req.end()
  })
}

/** `n` fresh-connection GETs, `parallel` at a time; the upstream that answered each (or its failure, or its status). */
export async function burst(url: string, n: number, parallel = 20): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i += parallel) {
    const batch = await Promise.all(Array.from({ length: Math.min(parallel, n - i) }, () => freshGet(url)))
    for (const a of batch) out.push('error' in a ? a.error : a.status === 200 ? (a.upstream ?? '?') : String(a.status))
  }
  return out
}

/** Whether a process is alive (signal 0 checks without signalling). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The JSON log lines among a process's stdout lines, parsed. */
export function logLines<T>(lines: readonly string[]): T[] {
  return lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as T)
}

/** The pids of the workers that wrote access-log lines among `lines` (pino writes each process's own pid). */
export function accessPids(lines: readonly string[], primary: number): Map<number, number> {
  const pids = new Map<number, number>()
  for (const line of lines) {
    if (!line.includes('"log":"access"')) continue
    const pid = (JSON.parse(line) as { pid: number }).pid
    if (pid !== primary) pids.set(pid, (pids.get(pid) ?? 0) + 1)
  }
  return pids
}
