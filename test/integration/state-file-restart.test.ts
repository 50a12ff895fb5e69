import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from '../helpers/cli.js'
import { useStateFileFixture } from './state-file-fixture.js'

const MEMORY_ONLY = 'state is in memory only'

describe('state.file: a restart keeps what the admin API changed', () => {
  const fixture = useStateFileFixture()

  it('weights, drains and the audit list survive SIGTERM and a start; the start is audited', async () => {
    const f = fixture()
    const a = await f.start()
    expect(a.lines.some((l) => l.includes(MEMORY_ONLY))).toBe(false)
    expect((await a.admin('PUT', '/v1/weights', { blue: 30, green: 70 })).status).toBe(200)
    const drained = await a.admin('POST', '/v1/drain', { url: f.blue.url })
    expect(drained.status).toBe(200)
    const revision = drained.body.revision as number
    expect(await a.stop('SIGTERM')).toBe(0)

    const b = await f.start()
    try {
      const state = (await b.admin('GET', '/v1/state')).body
      expect(state.weights).toEqual({ blue: 30, green: 70 })
      expect(state.store).toMatchObject({ kind: 'file', up: true })
      expect(state.versions.blue.instances[0]).toMatchObject({ url: f.blue.url, draining: true })
      // The drained instance gets no new work: every request goes to green.
      expect(await b.versionsServing(40)).toEqual(new Set(['green']))

      const audit = (await b.admin('GET', '/v1/audit')).body as any[]
      expect(audit.map((e) => e.action)).toEqual(['weights', 'drain', 'start'])
      expect(audit[2]).toMatchObject({
        source: 'system',
        after: { file: f.stateFile, revision },
        reason: `state loaded from ${f.stateFile} at revision ${revision}`,
        revision: revision + 1,
      })
      expect(state.revision).toBe(revision + 1)
    } finally {
      expect(await b.stop('SIGTERM')).toBe(0)
    }
  })

  it('POST /v1/reload keeps the runtime state (the file does not turn back into the seed)', async () => {
    const f = fixture()
    const c = await f.start()
    try {
      const reloaded = await c.admin('POST', '/v1/reload')
      expect(reloaded.status).toBe(200)
      expect(reloaded.body.weights).toEqual({ blue: 30, green: 70 })
      // And the reload itself is durable like any change.
      const saved = JSON.parse(readFileSync(f.stateFile, 'utf8'))
      expect(saved.state.revision).toBe(reloaded.body.revision)
      expect(saved.audit.at(-1)).toMatchObject({ action: 'reload', source: 'reload' })
    } finally {
      expect(await c.stop('SIGTERM')).toBe(0)
    }
  })
})

describe('state.file: blue-to-green cutover through the admin API, then a crash', () => {
  const fixture = useStateFileFixture()

  it('after SIGKILL and a start, traffic still goes to green and blue is still draining', async () => {
    const f = fixture()
    const a = await f.start()
    expect(await a.versionsServing(20)).toEqual(new Set(['blue']))
    expect((await a.admin('PUT', '/v1/weights', { blue: 0, green: 100 })).status).toBe(200)
    expect((await a.admin('POST', '/v1/drain', { version: 'blue' })).status).toBe(200)
    expect(await a.versionsServing(20)).toEqual(new Set(['green']))
    // A crash right after the admin API answered: no graceful stop, no flush.
    expect(await a.stop('SIGKILL')).toBe(null)

    const b = await f.start()
    try {
      expect(await b.versionsServing(100)).toEqual(new Set(['green']))
      const state = (await b.admin('GET', '/v1/state')).body
      expect(state.weights).toEqual({ blue: 0, green: 100 })
      expect(state.versions.blue.draining).toBe(true)
    } finally {
      expect(await b.stop('SIGTERM')).toBe(0)
    }
  })
})

describe('state.file: a file sluice cannot trust stops the start', () => {
  const fixture = useStateFileFixture()

  it.each([
    ['truncated JSON', '{"format":1,"writtenAt":"x","state":{"revision":', 'not valid JSON'],
    ['another format', '{"format":2}', 'format 2 is not 1'],
    ['a state that fails the schema', '{"format":1,"writtenAt":"x","state":{},"audit":[],"rollouts":[]}', 'invalid at state.revision'],
  ])('%s: exit 1 and one line on stderr naming the file; the file is left alone', async (_what, text, problem) => {
    const f = fixture()
    writeFileSync(f.stateFile, text)
    const r = await runCli(['serve', '--config', f.config])
    expect(r.code).toBe(1)
    const lines = r.stderr.split('\n').filter((l) => l !== '')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^start failed: state file /)
    expect(lines[0]).toContain(f.stateFile)
    expect(lines[0]).toContain(problem)
    expect(readFileSync(f.stateFile, 'utf8')).toBe(text)
  })

  it('a state file in a directory that does not exist: exit 1 naming it (a volume not mounted)', async () => {
    const f = fixture()
    const config = join(f.dir, 'no-dir.yaml')
    writeFileSync(config, readFileSync(f.config, 'utf8').replace(f.stateFile, join(f.dir, 'absent', 'state.json')))
    const r = await runCli(['serve', '--config', config])
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(
      `start failed: state file ${join(f.dir, 'absent', 'state.json')}: directory ${join(f.dir, 'absent')} does not exist (create it, or mount the volume)\n`,
    )
  })
})

describe('without state.file and without redis', () => {
  const fixture = useStateFileFixture([], { stateFile: false })

  it('serve warns at start that runtime changes are lost on restart', async () => {
    const f = fixture()
    const a = await f.start()
    try {
      const warning = a.lines.map((l) => JSON.parse(l)).find((e) => String(e.msg).startsWith(MEMORY_ONLY))
      expect(warning).toMatchObject({ level: 40 })
      expect(warning.msg).toContain('set state.file')
      expect((await a.admin('GET', '/v1/state')).body.store.kind).toBe('memory')
    } finally {
      expect(await a.stop('SIGTERM')).toBe(0)
    }
  })
})
