/**
 * The desired state: what operators and the rollout asked for, as plain
 * JSON data with a revision. It is what the state store keeps and shares;
 * the routing table is derived from it plus the live facts (health,
 * ejection), never the other way round.
 */
export interface DesiredState {
  /** Increases with every committed change; several proxies reconcile by it. */
  revision: number
  /** Integer percents summing to 100, every declared version present. */
  weights: Record<string, number>
  drained: { versions: string[]; instances: string[] }
  /** Instances added at runtime (POST /v1/instances), kept across reloads and restarts like any change. */
  instances: RuntimeInstance[]
  /** The rollout's serialisable state, or null when none ever ran. */
  rollout: Record<string, unknown> | null
  /** The live mirror settings, or null when not mirroring. */
  mirror: Record<string, unknown> | null
  /** Which config file generation set the static parts (changes on reload). */
  configGeneration: number
}

/** An instance added through the admin API: its version and normalised origin. */
export interface RuntimeInstance {
  version: string
  url: string
}

/** Who made a change; `system` is sluice itself (a start that loaded the state file). */
export const CHANGE_SOURCES = ['admin', 'rollout', 'analysis', 'reload', 'peer', 'system'] as const
export type ChangeSource = (typeof CHANGE_SOURCES)[number]

export interface AuditEntry {
  at: string
  action: string
  source: ChangeSource
  actor: string | null
  before: unknown
  after: unknown
  reason: string | null
  revision: number
}

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
