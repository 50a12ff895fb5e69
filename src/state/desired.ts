import type { DesiredState } from './types.js'

// The shared state's types live in ./types.js (no imports); re-exported here for the store's modules.
export { CHANGE_SOURCES } from './types.js'
export type { AuditEntry, ChangeSource, DesiredState, RuntimeInstance } from './types.js'

export function initialState(weights: Readonly<Record<string, number>>): DesiredState {
  return {
    revision: 1,
    weights: { ...weights },
    drained: { versions: [], instances: [] },
    instances: [],
    rollout: null,
    mirror: null,
    configGeneration: 1,
  }
}
