import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import type { SliceSnapshot } from '../../../src/analysis/slices.js'
import { type AuditEntry, type DesiredState, initialState } from '../../../src/state/desired.js'
import type { StateStore } from '../../../src/state/store.js'

/** Makes a fresh, empty store (not yet initialised); every call is isolated from the others. */
export type StoreMaker = () => Promise<StateStore>

/**
 * The behaviour every state store shares (memory, Redis, ...): run it with
 * `storeContract('memory', () => ...)` from a test file per store.
 */
export function storeContract(name: string, make: StoreMaker): void {
  describe(`${name} store: the state store contract`, () => {
    const open: StateStore[] = []
    const fresh = async () => {
      const s = await make()
      open.push(s)
      return s
    }
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()))
    })

    it('an empty store is seeded and answers the seed', async () => {
      const store = await fresh()
      const seed = initialState({ blue: 90, green: 10 })
      expect(await store.init(seed)).toEqual(seed)
      expect(store.current()).toEqual(seed)
      expect(store.up).toBe(true)
      expect(store.kind).toBe(name)
    })

    it('a commit on the latest revision becomes the current state and is audited', async () => {
      const store = await fresh()
      const s1 = await store.init(initialState({ blue: 100, green: 0 }))
      const s2 = { ...s1, revision: 2, weights: { blue: 50, green: 50 } }
      expect(await store.commit(s2, entry(2, 'weights'))).toEqual({ ok: true })
      expect(store.current()).toEqual(s2)
      const audit = await store.audit(10)
      expect(audit.map((e) => [e.revision, e.action])).toEqual([[2, 'weights']])
    })

    it('a commit on a stale revision changes nothing and answers the latest state', async () => {
      const store = await fresh()
      const s1 = await store.init(initialState({ blue: 100, green: 0 }))
      const s2 = { ...s1, revision: 2, weights: { blue: 50, green: 50 } }
      await store.commit(s2, entry(2, 'weights'))
      const stale = { ...s1, revision: 2, weights: { blue: 0, green: 100 } }
      const res = await store.commit(stale, entry(2, 'weights'))
      expect(res).toEqual({ ok: false, state: s2 })
      expect(store.current()).toEqual(s2)
      expect((await store.audit(10)).length).toBe(1)
    })

    it('commits follow a model: only revision+1 lands, in order (property)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ skip: fc.integer({ min: -1, max: 1 }), blue: fc.integer({ min: 0, max: 100 }) }), {
            minLength: 1,
            maxLength: 12,
          }),
          async (ops) => {
            const store = await fresh()
            let model = await store.init(initialState({ blue: 100, green: 0 }))
            const landed: number[] = []
            for (const op of ops) {
              const next: DesiredState = {
                ...model,
                revision: model.revision + 1 + op.skip,
                weights: { blue: op.blue, green: 100 - op.blue },
              }
              const res = await store.commit(next, entry(next.revision, 'weights'))
              expect(res.ok).toBe(op.skip === 0)
              if (op.skip === 0) {
                model = next
                landed.push(next.revision)
              }
              expect(store.current()).toEqual(model)
            }
            expect((await store.audit(1000)).map((e) => e.revision)).toEqual(landed)
            await store.close()
          },
        ),
        { numRuns: 15 },
      )
    })

    it('the audit list answers the newest entries, newest last', async () => {
      const store = await fresh()
      let s = await store.init(initialState({ blue: 100 }))
      for (let i = 0; i < 5; i++) {
        s = { ...s, revision: s.revision + 1 }
        await store.commit(s, entry(s.revision, `change-${i}`))
      }
      expect((await store.audit(3)).map((e) => e.action)).toEqual(['change-2', 'change-3', 'change-4'])
      expect(await store.audit(0)).toEqual([])
    })

    it('rollout records are upserted by id, newest last', async () => {
      const store = await fresh()
      await store.init(initialState({ blue: 100 }))
      await store.saveRollout({ id: 'r1', outcome: null })
      await store.saveRollout({ id: 'r2', outcome: null })
      await store.saveRollout({ id: 'r1', outcome: 'promoted' })
      expect(await store.rollouts(10)).toEqual([
        { id: 'r1', outcome: 'promoted' },
        { id: 'r2', outcome: null },
      ])
      expect(await store.rollouts(1)).toEqual([{ id: 'r2', outcome: null }])
    })

    it('a lone store becomes the leader', async () => {
      const store = await fresh()
      await store.init(initialState({ blue: 100 }))
      await expect.poll(() => store.leader, { message: 'leadership', timeout: 5000 }).toBeTruthy()
    })

    it("a proxy's published analysis slices are read back by version", async () => {
      const store = await fresh()
      await store.init(initialState({ blue: 100, green: 0 }))
      const blue: SliceSnapshot[] = [{ startMs: 1000, requests: 10, errors: 1, latency: [3, 10] }]
      await store.publishSlices(store.id, { blue, green: [] })
      expect(await store.readSlices('blue')).toEqual([blue])
      expect(await store.readSlices('green')).toEqual([[]])
      expect(await store.readSlices('red')).toEqual([])
    })

    it('close can be called twice', async () => {
      const store = await fresh()
      await store.init(initialState({ blue: 100 }))
      await store.close()
      await store.close()
    })
  })
}

export function entry(revision: number, action: string, source: AuditEntry['source'] = 'admin'): AuditEntry {
  return {
    at: new Date(0).toISOString(),
    action,
    source,
    actor: null,
    before: null,
    after: null,
    reason: null,
    revision,
  }
}
