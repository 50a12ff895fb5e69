import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { StateFileError } from '../../../src/errors.js'
import { initialState } from '../../../src/state/desired.js'
import { MemoryStore } from '../../../src/state/memory-store.js'
import { StateFile } from '../../../src/state/state-file.js'
import { entry, storeContract } from './store-contract.js'

const root = await mkdtemp(join(tmpdir(), 'sluice-file-store-'))
afterAll(() => rm(root, { recursive: true, force: true }))
let n = 0
const freshPath = async () => {
  const dir = join(root, `s${n++}`)
  await mkdir(dir)
  return join(dir, 'state.json')
}
const storeAt = (path: string) => new MemoryStore({ file: new StateFile(path) })

// Every store gets a file of its own in an empty directory: an empty store.
storeContract('file', async () => storeAt(await freshPath()))

describe('the state file', () => {
  it('a second store on the same file finds every commit, the audit list and rollout records; the file wins over the seed', async () => {
    const path = await freshPath()
    const a = storeAt(path)
    const s1 = await a.init(initialState({ blue: 100, green: 0 }))
    expect(a.restored).toBeUndefined()
    const s2 = { ...s1, revision: 2, weights: { blue: 0, green: 100 } }
    const s3 = { ...s2, revision: 3, drained: { versions: ['blue'], instances: [] } }
    await a.commit(s2, entry(2, 'weights'))
    await a.commit(s3, entry(3, 'drain'))
    await a.saveRollout({ id: 'r1', outcome: 'promoted' })
    await a.close()

    const b = storeAt(path)
    expect(await b.init(initialState({ blue: 100, green: 0 }))).toEqual(s3)
    expect(b.restored).toEqual({ from: path, revision: 3 })
    expect((await b.audit(10)).map((e) => e.action)).toEqual(['weights', 'drain'])
    expect(await b.rollouts(10)).toEqual([{ id: 'r1', outcome: 'promoted' }])
    const saved = JSON.parse(await readFile(path, 'utf8'))
    expect(saved).toMatchObject({ format: 1, state: s3 })
  })

  it('a first start writes the seed at once, so a bad path fails at start, not at the first change', async () => {
    const path = await freshPath()
    await storeAt(path).init(initialState({ blue: 100 }))
    expect(JSON.parse(await readFile(path, 'utf8')).state.revision).toBe(1)
    const missingDir = join(root, 'no-such-dir', 'state.json')
    await expect(storeAt(missingDir).init(initialState({ blue: 100 }))).rejects.toThrow(
      `state file ${missingDir}: directory ${join(root, 'no-such-dir')} does not exist`,
    )
  })

  it.each([
    ['not JSON', '{"format": 1, "state": ', /^state file .*: not valid JSON \(/],
    ['empty', '', /^state file .*: not valid JSON \(/],
    ['another format', '{"format": 2}', /^state file .*: format 2 is not 1/],
    ['no format', '[]', /^state file .*: format undefined is not 1/],
    [
      'a bad weight',
      JSON.stringify({
        format: 1,
        writtenAt: 'x',
        state: { ...initialState({ blue: 100 }), weights: { blue: 'all' } },
        audit: [],
        rollouts: [],
      }),
      /^state file .*: invalid at state\.weights\.blue: /,
    ],
    [
      'an unknown key',
      JSON.stringify({ format: 1, writtenAt: 'x', state: initialState({ blue: 100 }), audit: [], rollouts: [], x: 1 }),
      /^state file .*: invalid at \(top level\): /,
    ],
  ])('a file that is %s is refused by name, never reset', async (_what, text, message) => {
    const path = await freshPath()
    await writeFile(path, text)
    const err = await storeAt(path)
      .init(initialState({ blue: 100 }))
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StateFileError)
    expect((err as StateFileError).code).toBe('SLUICE_STATE_FILE')
    expect((err as Error).message).toMatch(message)
    expect((err as Error).message).toContain(path)
    expect((err as Error).message).not.toContain('\n')
    // The operator's file is left as it was, for them to look at.
    expect(await readFile(path, 'utf8')).toBe(text)
  })

  it('runtime instances are kept, and a file written before they existed loads with none', async () => {
    const path = await freshPath()
    const store = storeAt(path)
    const s1 = await store.init(initialState({ blue: 100 }))
    const s2 = { ...s1, revision: 2, instances: [{ version: 'blue', url: 'http://10.0.0.9:8080' }] }
    await store.commit(s2, entry(2, 'instance.add'))
    expect(await storeAt(path).init(initialState({ blue: 100 }))).toEqual(s2)

    const older = await freshPath()
    const { instances: _, ...before } = initialState({ blue: 100 })
    await writeFile(older, JSON.stringify({ format: 1, writtenAt: 'x', state: before, audit: [], rollouts: [] }))
    expect((await storeAt(older).init(initialState({ blue: 100 }))).instances).toEqual([])
  })

  it('a change that cannot be written is refused and changes nothing', async () => {
    const path = await freshPath()
    const store = storeAt(path)
    const s1 = await store.init(initialState({ blue: 100, green: 0 }))
    // The temporary file's name taken by a directory: the write fails.
    await mkdir(join(path, '..', '.state.json.tmp'))
    const s2 = { ...s1, revision: 2, weights: { blue: 0, green: 100 } }
    await expect(store.commit(s2, entry(2, 'weights'))).rejects.toThrow(/^state file .*: cannot write: /)
    expect(store.current()).toEqual(s1)
    expect(await store.audit(10)).toEqual([])
    expect(JSON.parse(await readFile(path, 'utf8')).state).toEqual(s1)
    await rm(join(path, '..', '.state.json.tmp'), { recursive: true })
    expect(await store.commit(s2, entry(2, 'weights'))).toEqual({ ok: true })
    expect(JSON.parse(await readFile(path, 'utf8')).state).toEqual(s2)
  })

  it('concurrent commits on one revision: exactly one lands, and the file holds it', async () => {
    const path = await freshPath()
    const store = storeAt(path)
    const s1 = await store.init(initialState({ blue: 100, green: 0 }))
    const tries = [10, 20, 30].map((g) => ({ ...s1, revision: 2, weights: { blue: 100 - g, green: g } }))
    const res = await Promise.all(tries.map((s) => store.commit(s, entry(2, 'weights'))))
    expect(res.filter((r) => r.ok)).toHaveLength(1)
    expect(JSON.parse(await readFile(path, 'utf8')).state).toEqual(store.current())
  })
})
