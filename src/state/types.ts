/**
 * The shared state's vocabulary as plain data types: what the state store
 * keeps and shares between proxies, what the audit records, and the words
 * the CLI sends. It imports nothing, so any process or tool can name these
 * without pulling in the proxy; the zod schemas that read them back from
 * another proxy (Redis) or the state file are checked against these types at
 * compile time (state/desired-schema.ts, rollout/gates-schema.ts).
 */

/** Exactly the same type, both ways: the compile-time guard between a schema's output and a type here. */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false

// ---- changes and the audit ----

/** Who made a change; `system` is sluice itself (a start that loaded the state file). */
export const CHANGE_SOURCES = ['admin', 'rollout', 'analysis', 'reload', 'peer', 'system', 'signal'] as const
export type ChangeSource = (typeof CHANGE_SOURCES)[number]
/** The sources a rollout transition is recorded under. */
export type AuditSource = Extract<ChangeSource, 'admin' | 'rollout' | 'analysis'>

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

/** What POST /v1/drain and /v1/undrain name: a whole version or one instance. */
export type DrainTarget = { version: string } | { url: string }

/** What an operator can tell an active rollout to do. */
export type RolloutCommand = 'pause' | 'resume' | 'promote' | 'abort' | 'approve'

// ---- mirroring ----

/** The `mirror` section as validated (config file, PUT /v1/mirror, a rollout's mirror phase). */
export interface MirrorSection {
  version: string
  percent: number
  methods: string[]
  compare: boolean
  /** Header names (lower-cased) and JSON pointers ("/a/b") left out of the comparison. */
  ignore: string[]
  timeoutMs: number
  maxInflight: number
  maxBodyBytes: number
}

// ---- rollouts ----

export type RolloutStatus = 'idle' | 'progressing' | 'paused' | 'promoted' | 'rolled_back'
export type RolloutPhase = 'mirror' | 'steps'
export type OnBreach = 'rollback' | 'pause'

export interface RolloutStep {
  /** Canary weight, integer percent. The last step is 100: reaching it promotes. */
  weight: number
  /** How long the step must hold with no breach before the next one. Ignored on the last step. */
  holdMs: number
  /** After its hold the step waits for `POST /v1/rollout/approve`. */
  approval?: boolean
}

/** A step as an operator writes it: the hold defaults on the server. */
export type RolloutStepInput = Omit<RolloutStep, 'holdMs'> & { holdMs?: number }

/** `rollout.mirror` of the config: a shadow phase before the first weighted step. */
export interface RolloutMirror {
  percent: number
  holdMs: number
  maxMismatchRate: number
  maxP95Ratio: number
  minRequests: number
}

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const
export type Weekday = (typeof WEEKDAYS)[number]

export interface DeployWindow {
  /** Days the window opens on; all days when absent. */
  days?: Weekday[]
  /** "HH:MM", inclusive. */
  from: string
  /** "HH:MM", exclusive; before `from` the window crosses midnight into the next day. */
  to: string
  /** IANA time zone; UTC when absent. */
  timeZone?: string
}

/** A check before a step advances: exactly one of `webhook`, `prometheus`. */
export interface Gate {
  name: string
  webhook?: { url: string; timeoutMs: number; headers: Record<string, string> }
  prometheus?: {
    url: string
    query: string
    min?: number
    max?: number
    timeoutMs: number
    headers: Record<string, string>
  }
}

export const NOTIFY_EVENTS = ['started', 'step', 'awaiting', 'paused', 'promoted', 'rolled_back'] as const
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number]

export interface NotifyTarget {
  url: string
  events: NotifyEvent[]
  /** `json`: the event as documented; `slack`: `{"text": ...}` for a Slack incoming webhook. */
  format: 'json' | 'slack'
  headers: Record<string, string>
}

export interface StepReached {
  /** -1 for the mirror phase. */
  step: number
  weight: number
  at: number
}

/**
 * The rollout's state as plain JSON data: it is stored (memory, Redis) and
 * another proxy resumes from it with nothing but its own clock. Times are
 * epoch milliseconds.
 *
 * It is a superset of the `/v1/state` `rollout` object
 * (`status`, `baseline`, `canary`, `step`, `reason`) and can be served as is.
 *
 * `step` is the 0-based index of the current weighted step. It is -1 when
 * no weighted step has been reached: idle, or during the optional mirror
 * phase, which `phase: 'mirror'` names (the canary then has weight 0 and
 * receives copies of the baseline's requests).
 */
export interface RolloutState {
  status: RolloutStatus
  /** Names the rollout in reports; null when idle. */
  id: string | null
  baseline: string | null
  canary: string | null
  step: number
  /** null when idle. */
  phase: RolloutPhase | null
  /** Why it paused, rolled back or was promoted; null while progressing. */
  reason: string | null
  steps: RolloutStep[]
  onBreach: OnBreach
  mirror: RolloutMirror | null
  /** Who started it (the admin token's name), null for the config's autoStart. */
  actor: string | null
  startedAt: number | null
  endedAt: number | null
  /** When the current step (or the mirror phase) began. */
  stepStartedAt: number | null
  /** When the current hold began: the step's start, or the last resume. */
  holdStartedAt: number | null
  /** Every step reached, in order, with its time. */
  reached: StepReached[]
  /** Bumped on every change, so stores can keep the newest. */
  revision: number
  /** What the current step waits for once its hold passed: `approval`, `gate:NAME`, `window`, or null. */
  awaiting?: string | null
  /** The step an operator approved (index), null when none. */
  approvedStep?: number | null
  /** When the gates began failing on this step (the first failing check after the hold), null while none fails. */
  gateFailingSince?: number | null
  /** Checks before a step advances, their timeout, the deploy windows and the notification targets. */
  gates?: Gate[]
  gateTimeoutMs?: number | null
  windows?: DeployWindow[]
  notify?: NotifyTarget[]
}

// ---- the desired state ----

/** An instance added through the admin API: its version and normalised origin. */
export interface RuntimeInstance {
  version: string
  url: string
}

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
  /** The rollout's state, or null when none ever ran. */
  rollout: RolloutState | null
  /** The live mirror settings, or null when not mirroring. */
  mirror: MirrorSection | null
  /** Which config file generation set the static parts (changes on reload). */
  configGeneration: number
}

/**
 * The one rule for a weight split, for the config file and PUT /v1/weights:
 * every name a declared version, every weight an integer 0..100, and (when
 * each weight is one) a sum of 100. `path` is the version's name, '' for the
 * sum.
 */
export function weightProblems(
  weights: Readonly<Record<string, number>>,
  declared: (name: string) => boolean,
): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = []
  let sum = 0
  let integers = true
  for (const [name, w] of Object.entries(weights)) {
    if (!declared(name)) problems.push({ path: name, message: `unknown version "${name}"` })
    if (!Number.isInteger(w) || w < 0 || w > 100) {
      problems.push({ path: name, message: 'must be an integer 0..100' })
      integers = false
    }
    sum += w
  }
  if (integers && sum !== 100) problems.push({ path: '', message: `weights must sum to 100, not ${sum}` })
  return problems
}
