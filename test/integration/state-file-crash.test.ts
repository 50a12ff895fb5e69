import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { StateFile } from '../../src/state/state-file.js'
import { MAIN, ROOT } from '../helpers/cli.js'
import { admin } from '../helpers/proxy.js'
import { useStateFileFixture } from './state-file-fixture.js'

const ROUNDS = 12
const SEED = Number(process.env.SLUICE_TEST_SEED ?? Date.now() % 1_000_000)

/** mulberry32: a small seeded generator, so a failing run can be replayed with SLUICE_TEST_SEED. */
function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `sluice serve` that may be killed at any moment, before or after it listens. */
function spawnServe(config: string) {
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', config], { cwd: ROOT })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  )
  const listening = new Promise<number>((resolve) => {
    let partial = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      partial += d
      for (let nl = partial.indexOf('\n'); nl !== -1; nl = partial.indexOf('\n')) {
        const line = partial.slice(0, nl)
        partial = partial.slice(nl + 1)
        if (line.includes('"msg":"listening"')) resolve(JSON.parse(line).adminPort as number)
      }
    })
  })
  return { child, exited, listening, stderr: () => stderr }
}

describe('state.file under kill -9', () => {
  const fixture = useStateFileFixture()

  it(`kills at random moments during a stream of admin changes never leave a file that fails to load (seed ${SEED})`, async () => {
    const f = fixture()
    const random = seeded(SEED)
    // Weights by revision, as this test knows them: acknowledged, or the one change in flight.
    const expected = new Map<number, Record<string, number>>([[1, { blue: 100, green: 0 }]])
    // The newest revision known to be on disk: acknowledged to this test or loaded back from the file.
    let known = 0
    let changes = 0
    for (let round = 0; round < ROUNDS; round++) {
      const where = `seed ${SEED}, round ${round}`
      const proc = spawnServe(f.config)
      // A start commits one change (the audit's `start`) on top of the file's revision.
      if (known > 0) expected.set(known + 1, expected.get(known)!)
      // Every third round is killed from its spawn: during the start (the file's load and first write) or soon after.
      const early = round % 3 === 0
      const killAfter = early ? 100 + random() * 800 : random() * 400
      let killed = false
      const kill = () => {
        killed = true
        proc.child.kill('SIGKILL')
      }
      let timer: NodeJS.Timeout | undefined
      if (early) timer = setTimeout(kill, killAfter)
      const adminPort = await Promise.race([proc.listening, proc.exited.then(() => undefined)])
      if (adminPort !== undefined) {
        const adminUrl = `http://127.0.0.1:${adminPort}`
        const stream = (async () => {
          const state = await admin({ adminUrl }, 'GET', '/v1/state')
          known = state.body.revision
          expected.set(known, state.body.weights)
          for (;;) {
            const green = Math.floor(random() * 101)
            const weights = { blue: 100 - green, green }
            expected.set(known + 1, weights)
            const r = await admin({ adminUrl }, 'PUT', '/v1/weights', weights)
            expect(r.status, where).toBe(200)
            expect(r.body.revision, where).toBe(known + 1)
            known = r.body.revision
            changes++
          }
        })().catch((err: unknown) => {
          // The connection dies with the process; anything else is a failure.
          if (!killed) throw err
        })
        if (!early) timer = setTimeout(kill, killAfter)
        await proc.exited
        await stream
      }
      clearTimeout(timer)
      const exit = await proc.exited
      expect(exit, `${where}: the process ended on its own\n${proc.stderr()}`).toEqual({ code: null, signal: 'SIGKILL' })

      const saved = await new StateFile(f.stateFile).load()
      if (saved === undefined) {
        // Killed in the very first start before it wrote anything: still a first start.
        expect(known, where).toBe(0)
        continue
      }
      const revision = saved.state.revision
      expect(revision, where).toBeGreaterThanOrEqual(known)
      expect(revision, where).toBeLessThanOrEqual(known + 1)
      expect(saved.state.weights, where).toEqual(expected.get(revision))
      // State and audit are one file, replaced at once: they always agree.
      if (saved.audit.length > 0) expect(saved.audit.at(-1)!.revision, where).toBe(revision)
      known = revision
    }

    // The real process loads what the last kill left.
    const last = await f.start()
    try {
      const state = (await last.admin('GET', '/v1/state')).body
      expect(state.revision).toBe(known + 1)
      expect(state.weights).toEqual(expected.get(known))
      const audit = (await last.admin('GET', '/v1/audit')).body as any[]
      expect(audit.at(-1)).toMatchObject({ action: 'start', source: 'system', after: { revision: known } })
    } finally {
      expect(await last.stop('SIGTERM')).toBe(0)
    }
    // The stream ran: most kills landed among admin changes, each of them a file write.
    expect(changes).toBeGreaterThan(ROUNDS)
  })
})
