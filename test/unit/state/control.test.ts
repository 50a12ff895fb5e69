import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { Control } from '../../../src/state/control.js'
import { type DesiredState, initialState } from '../../../src/state/desired.js'
import { MemoryStore } from '../../../src/state/memory-store.js'

describe('the change path', () => {
  it("applies the store's latest state when a peer's newer change arrived while the commit was in flight", async () => {
    const store = new MemoryStore()
    await store.init(initialState({ blue: 100, green: 0 }))
    const commit = store.commit.bind(store)
    let peerState: DesiredState | undefined
    // The commit lands, then a peer's change on top of it arrives before the answer.
    store.commit = async (next, entry) => {
      const res = await commit(next, entry)
      peerState = { ...next, revision: next.revision + 1, drained: { versions: ['green'], instances: [] } }
      await commit(peerState, { ...entry, revision: peerState.revision })
      return res
    }
    const applied: DesiredState[] = []
    const control = new Control(store, pino({ level: 'silent' }), (s) => applied.push(s))
    const next = await control.change('weights', { source: 'admin' }, (s) => ({
      next: { ...s, weights: { blue: 50, green: 50 } },
      before: s.weights,
      after: { blue: 50, green: 50 },
    }))
    expect(next.revision).toBe(2)
    expect(applied.at(-1)).toEqual(peerState)
  })
})
