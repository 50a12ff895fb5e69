import { describe, expect, it } from 'vitest'
import { mirrorSchema } from '../../../src/config/schema.js'
import { transition } from '../../../src/rollout/rollout-machine.js'
import { idleRollout } from '../../../src/rollout/rollout-state.js'
import { initialState } from '../../../src/state/desired.js'
import { fileStateSchema, sharedStateSchema } from '../../../src/state/desired-schema.js'
import type { DesiredState } from '../../../src/state/types.js'

const steps = [
  { weight: 10, holdMs: 1000 },
  { weight: 100, holdMs: 0 },
]

/** A state as this release writes it: a running rollout and live mirroring. */
function written(): DesiredState {
  const rollout = transition(idleRollout(), { type: 'start', baseline: 'blue', canary: 'green', steps }, 1).state
  return {
    ...initialState({ blue: 90, green: 10 }),
    rollout,
    mirror: mirrorSchema.parse({ version: 'green', percent: 5 }),
  }
}

describe('the desired state arriving from another proxy or the state file', () => {
  it('reads back what this release writes, unchanged', () => {
    const state = JSON.parse(JSON.stringify(written())) as unknown
    expect(sharedStateSchema.parse(state)).toEqual(written())
    expect(fileStateSchema.parse(state)).toEqual(written())
  })

  it('refuses a rollout or mirror that is not one', () => {
    const bad = [
      { ...written(), rollout: { status: 'sideways' } },
      { ...written(), rollout: { ...written().rollout, steps: [{ weight: 'ten' }] } },
      { ...written(), mirror: { version: 'Not A Name' } },
      { ...written(), mirror: { ...written().mirror, percent: 101 } },
      { ...written(), weights: { blue: 1.5 } },
    ]
    for (const state of bad) {
      expect(sharedStateSchema.safeParse(state).success).toBe(false)
      expect(fileStateSchema.safeParse(state).success).toBe(false)
    }
  })

  it('leaves out a key from a newer peer, but refuses it in the state file', () => {
    const newer = { ...written(), later: 1 }
    expect(sharedStateSchema.parse(newer)).toEqual(written())
    expect(fileStateSchema.safeParse(newer).success).toBe(false)
  })

  it('reads a state from before runtime instances as having none', () => {
    const { instances: _none, ...old } = written()
    expect(sharedStateSchema.parse(old).instances).toEqual([])
  })

  it('is the same for an idle rollout', () => {
    const state = { ...initialState({ blue: 100 }), rollout: idleRollout() }
    expect(sharedStateSchema.parse(state)).toEqual(state)
  })
})
