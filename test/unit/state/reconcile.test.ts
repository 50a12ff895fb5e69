import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { DesiredState } from '../../../src/state/desired.js'
import { initialState } from '../../../src/state/desired.js'
import { type PendingChange, planReconcile } from '../../../src/state/reconcile.js'
import { idleRollout } from '../../../src/rollout/rollout-state.js'
import { entry } from './store-contract.js'

const at = (revision: number, blue: number, rollout: DesiredState['rollout'] = null): DesiredState => ({
  ...initialState({ blue, green: 100 - blue }),
  revision,
  rollout,
})

const change = (previous: DesiredState, state: DesiredState, action = 'weights'): PendingChange => ({
  previous,
  state,
  entry: entry(state.revision, action),
})

const progressing = { ...idleRollout(), status: 'progressing' as const, canary: 'green', baseline: 'blue', step: 1 }
const rolledBack = { ...progressing, status: 'rolled_back' as const, reason: 'error rate' }

describe('reconciling with the shared store after an outage', () => {
  it('with nothing pending, a newer shared state is adopted', () => {
    const remote = at(7, 50)
    expect(planReconcile(at(5, 100), [], remote)).toEqual({ kind: 'adopt', state: remote, overridden: [] })
  })

  it('with nothing pending, the same revision needs nothing', () => {
    expect(planReconcile(at(5, 100), [], at(5, 100))).toEqual({ kind: 'none' })
  })

  it('a store that came back empty is re-seeded from this proxy', () => {
    const local = at(5, 100)
    expect(planReconcile(local, [], null)).toEqual({
      kind: 'write',
      state: local,
      expected: 0,
      entries: [],
      overridden: [],
    })
  })

  it('a store that came back older is overwritten by the higher revision', () => {
    const local = at(9, 100)
    expect(planReconcile(local, [], at(4, 0))).toMatchObject({ kind: 'write', state: local, expected: 4 })
  })

  it('changes made during the outage are written when nobody else changed anything', () => {
    const base = at(5, 100)
    const a = at(6, 90)
    const b = at(7, 80)
    const pending = [change(base, a), change(a, b)]
    expect(planReconcile(b, pending, base)).toEqual({
      kind: 'write',
      state: b,
      expected: 5,
      entries: pending.map((p) => p.entry),
      overridden: [],
    })
    // The store lost everything meanwhile: the same.
    expect(planReconcile(b, pending, null)).toMatchObject({ kind: 'write', state: b, expected: 0 })
  })

  it('a newer shared state wins over pending changes, which are reported as overridden', () => {
    const base = at(5, 100)
    const mine = at(6, 90)
    const theirs = at(8, 40)
    const pending = [change(base, mine)]
    expect(planReconcile(mine, pending, theirs)).toEqual({ kind: 'adopt', state: theirs, overridden: pending })
  })

  it('a pending rollback is re-applied on top of a newer shared state', () => {
    const base = at(5, 75, progressing)
    const rolled = at(6, 100, rolledBack)
    const theirs = { ...at(8, 50, { ...progressing, step: 2 }), drained: { versions: [], instances: ['http://x:1'] } }
    const pending = [change(base, rolled, 'rollback')]
    const step = planReconcile(rolled, pending, theirs)
    expect(step).toMatchObject({ kind: 'write', expected: 8, overridden: [] })
    if (step.kind !== 'write') throw new Error('unreachable')
    // Their drain stays; the rollback's weights and rollout win.
    expect(step.state).toEqual({ ...theirs, revision: 9, weights: rolled.weights, rollout: rolledBack })
    expect(step.entries).toHaveLength(1)
    expect(step.entries[0]).toMatchObject({ action: 'rollback', revision: 9 })
    expect(step.entries[0]!.reason).toContain('re-applied')
  })

  it('a rollback that the shared state already has is not applied twice', () => {
    const base = at(5, 75, progressing)
    const rolled = at(6, 100, rolledBack)
    const theirs = at(7, 100, rolledBack)
    expect(planReconcile(rolled, [change(base, rolled, 'rollback')], theirs)).toMatchObject({ kind: 'adopt' })
  })

  it('a commit that landed before the connection dropped is recognised', () => {
    const base = at(5, 100)
    const mine = at(6, 90)
    expect(planReconcile(mine, [change(base, mine)], structuredClone(mine))).toEqual({ kind: 'none' })
  })

  it('whatever the states, the result never goes back in revision (property)', () => {
    const state = fc
      .record({ revision: fc.integer({ min: 1, max: 20 }), blue: fc.integer({ min: 0, max: 100 }) })
      .map((r) => at(r.revision, r.blue))
    fc.assert(
      fc.property(state, fc.option(state, { nil: null }), fc.integer({ min: 0, max: 3 }), (base, remote, n) => {
        let local = base
        const pending: PendingChange[] = []
        for (let i = 0; i < n; i++) {
          const next = at(local.revision + 1, (local.weights.blue! + 10) % 101)
          pending.push(change(local, next))
          local = next
        }
        const step = planReconcile(local, pending, remote)
        const shared = remote?.revision ?? 0
        if (step.kind === 'adopt') expect(step.state.revision).toBeGreaterThan(n === 0 ? local.revision : base.revision)
        if (step.kind === 'write') {
          expect(step.expected).toBe(shared)
          expect(step.state.revision).toBeGreaterThan(shared)
        }
      }),
    )
  })
})
