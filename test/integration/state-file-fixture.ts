import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { buildOnce, type ServeProcess, startServe } from '../helpers/cli.js'
import { admin, TEST_TOKEN } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

/**
 * A real `sluice serve` in front of blue and green with `state.file` in a
 * directory of its own, restarted as often as a test likes on the same
 * config and file.
 */
export interface StateFileFixture {
  readonly dir: string
  readonly config: string
  readonly stateFile: string
  readonly blue: TestUpstream
  readonly green: TestUpstream
  /** Starts `sluice serve` on the fixture's config (the previous process must have exited). */
  start(): Promise<Served>
  close(): Promise<void>
}

export interface Served extends ServeProcess {
  readonly adminUrl: string
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>
  /** The versions that answer `n` requests, one per sticky key. */
  versionsServing(n: number): Promise<Set<string>>
}

export async function stateFileFixture(extraYaml: string[] = [], opts: { stateFile?: boolean } = {}): Promise<StateFileFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-state-file-'))
  mkdirSync(join(dir, 'state'))
  const stateFile = join(dir, 'state', 'state.json')
  const blue = await startUpstream('blue')
  const green = await startUpstream('green')
  const config = join(dir, 'sluice.yaml')
  writeFileSync(
    config,
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      `admin: { host: 127.0.0.1, port: 0, token: ${TEST_TOKEN} }`,
      'versions:',
      `  blue: { instances: [{ url: ${blue.url} }] }`,
      `  green: { instances: [{ url: ${green.url} }] }`,
      'weights: { blue: 100, green: 0 }',
      'sticky: { keys: ["header:x-user-id"] }',
      'drain: { timeoutMs: 1000 }',
      ...(opts.stateFile === false ? [] : [`state: { file: ${stateFile} }`]),
      ...extraYaml,
      '',
    ].join('\n'),
  )
  const running = new Set<ServeProcess>()
  return {
    dir,
    config,
    stateFile,
    blue,
    green,
    async start() {
      const proc = await startServe(config)
      running.add(proc)
      proc.child.on('exit', () => running.delete(proc))
      const adminUrl = `http://127.0.0.1:${proc.adminPort}`
      return Object.assign(proc, {
        adminUrl,
        admin: (method: string, path: string, body?: unknown) => admin({ adminUrl }, method, path, body),
        async versionsServing(n: number) {
          const seen = new Set<string>()
          for (let i = 0; i < n; i++) {
            const res = await fetch(`${proc.url}/`, { headers: { 'x-user-id': `user-${i}` } })
            await res.text()
            seen.add(res.headers.get('x-upstream') ?? `status ${res.status}`)
          }
          return seen
        },
      })
    },
    async close() {
      await Promise.all([...running].map((p) => p.stop('SIGKILL')))
      await Promise.all([blue.close(), green.close()])
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** One fixture for the enclosing `describe`: built before its tests, closed after; read it inside a test. */
export function useStateFileFixture(...args: Parameters<typeof stateFileFixture>): () => StateFileFixture {
  let f: StateFileFixture | undefined
  beforeAll(async () => {
    await buildOnce()
    f = await stateFileFixture(...args)
  }, 180_000)
  afterAll(() => f?.close())
  return () => f!
}

/** Sticky requests, one after another, until stopped: the analysis needs traffic on both versions. */
export function traffic(p: Served): { stop(): Promise<void> } {
  let on = true
  const loop = (async () => {
    for (let i = 0; on; i++) {
      try {
        const res = await fetch(`${p.url}/`, { headers: { 'x-user-id': `user-${i % 500}` } })
        await res.text()
      } catch {
        // The process was killed under the load: the test goes on with the next one.
        return
      }
    }
  })()
  return {
    async stop() {
      on = false
      await loop
    },
  }
}
