import { VERSION_NAME } from '../config/schema.js'
import { type Flags, scanArgs } from './args.js'
import type { DrainTarget, OnBreach, RolloutCommand, RolloutStepInput as RolloutStep } from '../state/types.js'

/**
 * The words of `sluice ctl`, parsed into a command without any I/O, so that
 * every usage error (exit 2) is found before a request is sent.
 */

export type { DrainTarget, OnBreach, RolloutStep }

export type CtlCommand =
  | { verb: 'help'; topic: string[] }
  | { verb: 'state' }
  | { verb: 'weights'; weights: Record<string, number> }
  | { verb: 'drain' | 'undrain'; target: DrainTarget }
  | { verb: 'reload' }
  | { verb: 'restart' }
  | { verb: 'audit' }
  | { verb: 'rollout-start'; canary: string; baseline?: string; onBreach?: OnBreach; steps?: RolloutStep[] }
  | { verb: 'rollout'; action: RolloutCommand }
  | { verb: 'rollout-status'; watch?: { intervalMs: number } }
  | { verb: 'rollout-history' }
  | { verb: 'mirror-start'; version: string; percent: number }
  | { verb: 'mirror-stop' }
  | { verb: 'mirror-mismatches' }
  | { verb: 'instances-add'; version: string; url: string }
  | { verb: 'instances-remove'; url: string }

export interface ParsedCtl {
  command: CtlCommand
  /** Print the API's JSON answer instead of a table. */
  json: boolean
}

export type ParseResult = { ok: true; value: ParsedCtl } | { ok: false; message: string; json: boolean }

export const CTL_USAGE = `usage: sluice ctl <command> [--json] [--help]

  state                                  versions, weights, instances, rollout, analysis
  weights <version>=<percent> ...        set the weights (integers summing to 100)
  drain <version|url>                    stop new work to a version or an instance (http://...)
  undrain <version|url>                  take it back into service
  reload                                 re-read the config file
  restart                                replace every worker, one at a time, with the code and config on disk
  audit                                  recent changes: at, action, source, actor, before -> after, reason
  rollout start <canary> [--baseline B] [--on-breach pause|rollback] [--steps W[:HOLDMS][:approve],...]
  rollout pause|resume|promote|abort     control the active rollout (abort rolls back)
  rollout approve                        let a step that awaits an approval go on
  rollout status [--watch] [--interval MS]
                                         the active (or last) rollout; --watch prints each change
                                         and exits when it ends: 0 promoted, 1 rolled back or
                                         aborted, 3 paused, 4 admin API unreachable or refusing
  rollout history                        past and current rollouts with their reports
  mirror start <version> <percent>       copy a share of eligible requests to a version
  mirror stop                            stop mirroring
  mirror mismatches                      recent differences between shadow and primary
  instances add <version> <url>          add an instance at runtime (kept across reloads)
  instances remove <url>                 drain a runtime instance, then remove it
  help [command]                         this text, or the lines of one command (as --help)

  --json prints the admin API's JSON answer (rollout status: the rollout alone; with --watch,
  one JSON line per change); errors are then JSON on stderr: {"error":{"code","message"}}.

environment:
  SLUICE_ADMIN_URL         admin API address (default http://127.0.0.1:9901)
  SLUICE_ADMIN_TOKEN       bearer token for /v1/*
  SLUICE_ADMIN_TIMEOUT_MS  how long to wait for an answer (default 10000)

exit codes: 0 success, 1 the API answered an error or could not be reached, 2 usage error
`

/**
 * The help of `sluice ctl <words> --help`: the usage lines of the commands
 * that start with those words (with their continuation lines), then the
 * common notes; the whole text when no command matches.
 */
export function ctlHelp(topic: readonly string[]): string {
  const lines = CTL_USAGE.split('\n')
  const first = lines.findIndex((l) => l.startsWith('  '))
  const last = lines.findIndex((l, i) => i > first && l === '')
  const picked: string[] = []
  let taking = false
  for (const line of lines.slice(first, last)) {
    if (!line.startsWith('     ')) taking = topic.length > 0 && namesCommand(line, topic)
    if (taking) picked.push(line)
  }
  if (picked.length === 0) return CTL_USAGE
  return [`usage: sluice ctl ${topic.join(' ')} ...`, '', ...picked, ...lines.slice(last)].join('\n')
}

/** Whether a usage line's words (`rollout pause|resume|...`) begin with `topic`, one alternative per word. */
function namesCommand(line: string, topic: readonly string[]): boolean {
  const words = line.trim().split(/\s+/)
  return topic.every((t, i) => words[i] !== undefined && words[i]!.split('|').includes(t))
}

/** Every flag of `sluice ctl`; which verb takes which is checked after the words are parsed. */
const CTL_FLAGS = {
  json: { type: 'boolean' },
  watch: { type: 'boolean' },
  interval: { type: 'string' },
  baseline: { type: 'string' },
  'on-breach': { type: 'string' },
  steps: { type: 'string' },
} as const

/** The flags each verb takes besides --json and --help. */
const VERB_FLAGS: Readonly<Record<string, readonly string[]>> = {
  'rollout-start': ['baseline', 'on-breach', 'steps'],
  'rollout-status': ['watch', 'interval'],
}

const DEFAULT_WATCH_MS = 1000
const MIN_WATCH_MS = 50

const ROLLOUT_ACTIONS: readonly string[] = ['pause', 'resume', 'promote', 'abort', 'approve']

export function parseCtlArgs(argv: readonly string[]): ParseResult {
  const scanned = scanArgs(argv, CTL_FLAGS, true)
  if (!scanned.ok) return { ok: false, message: scanned.message, json: argv.includes('--json') }
  const { flags, positionals } = scanned
  const json = flags['json'] === true
  if (flags['help'] === true) return ok({ verb: 'help', topic: positionals }, json)
  const parsed = parseWords(positionals, flags)
  if (!parsed.ok) return { ...parsed, json }
  const command = parsed.value
  const allowed = VERB_FLAGS[command.verb] ?? []
  for (const name of Object.keys(flags)) {
    if (name === 'json' || name === 'help' || allowed.includes(name)) continue
    return { ok: false, message: `--${name} does not apply to this command`, json }
  }
  return ok(command, json)
}

function parseWords(words: readonly string[], flags: Flags): Part<CtlCommand> {
  const [verb, ...rest] = words
  switch (verb) {
    case undefined:
      return fail('missing command')
    case 'help':
      return { ok: true, value: { verb: 'help', topic: rest } }
    case 'state':
    case 'reload':
    case 'restart':
    case 'audit':
      return noMore(rest, verb) ?? { ok: true, value: { verb } }
    case 'weights':
      return then(parseWeights(rest), (weights) => ({ verb: 'weights', weights }))
    case 'drain':
    case 'undrain':
      return then(parseTarget(verb, rest), (target) => ({ verb, target }))
    case 'rollout':
      return parseRollout(rest, flags)
    case 'mirror':
      return parseMirror(rest)
    case 'instances':
      return parseInstances(rest)
    default:
      return fail(`unknown command "${verb}"`)
  }
}

type Part<T> = { ok: true; value: T } | { ok: false; message: string }

function parseWeights(args: readonly string[]): Part<Record<string, number>> {
  if (args.length === 0) return fail('weights needs at least one <version>=<percent>')
  const weights: Record<string, number> = {}
  for (const a of args) {
    const eq = a.indexOf('=')
    const name = eq < 0 ? a : a.slice(0, eq)
    const value = eq < 0 ? '' : a.slice(eq + 1)
    if (eq < 0 || !VERSION_NAME.test(name)) return fail(`weights: "${a}" is not <version>=<percent>`)
    const n = parsePercent(value)
    if (n === undefined) return fail(`weights.${name}: "${value}" is not an integer from 0 to 100`)
    if (Object.hasOwn(weights, name)) return fail(`weights.${name}: given twice`)
    weights[name] = n
  }
  return { ok: true, value: weights }
}

function parseTarget(verb: string, args: readonly string[]): Part<DrainTarget> {
  if (args.length !== 1) return fail(`${verb} needs one <version> or <url>`)
  const a = args[0]!
  // Instances are http:// or https:// URLs (README "Upstream TLS and HTTP/2"); anything else names a version.
  if (a.startsWith('http://') || a.startsWith('https://')) {
    return URL.canParse(a) ? { ok: true, value: { url: a } } : fail(`${verb}: "${a}" is not a valid URL`)
  }
  return VERSION_NAME.test(a) ? { ok: true, value: { version: a } } : fail(`${verb}: "${a}" is not a version name`)
}

function parseInstances(args: readonly string[]): Part<CtlCommand> {
  const [sub, ...rest] = args
  const url = (a: string, what: string): Part<string> =>
    a.startsWith('http://') && URL.canParse(a) ? { ok: true, value: a } : fail(`${what}: "${a}" is not an http:// URL`)
  if (sub === 'add') {
    if (rest.length !== 2) return fail('instances add needs <version> <url>')
    const [version, u] = rest as [string, string]
    if (!VERSION_NAME.test(version)) return fail(`instances add: "${version}" is not a version name`)
    const checked = url(u, 'instances add')
    return checked.ok ? { ok: true, value: { verb: 'instances-add', version, url: checked.value } } : checked
  }
  if (sub === 'remove') {
    if (rest.length !== 1) return fail('instances remove needs one <url>')
    const checked = url(rest[0]!, 'instances remove')
    return checked.ok ? { ok: true, value: { verb: 'instances-remove', url: checked.value } } : checked
  }
  return fail(sub === undefined ? 'instances needs add|remove' : `unknown instances command "${sub}"`)
}

function parseRollout(args: readonly string[], flags: Flags): Part<CtlCommand> {
  const [sub, ...rest] = args
  if (sub === undefined) return fail('rollout needs start|pause|resume|promote|abort|approve|status|history')
  if (sub === 'start') return parseRolloutStart(rest, flags)
  if (ROLLOUT_ACTIONS.includes(sub))
    return noMore(rest, `rollout ${sub}`) ?? { ok: true, value: { verb: 'rollout', action: sub as RolloutCommand } }
  if (sub === 'status') return noMore(rest, 'rollout status') ?? parseStatus(flags)
  if (sub === 'history') return noMore(rest, 'rollout history') ?? { ok: true, value: { verb: 'rollout-history' } }
  return fail(`unknown rollout command "${sub}"`)
}

function parseStatus(flags: Flags): Part<CtlCommand> {
  const interval = flags['interval']
  if (flags['watch'] !== true) {
    return interval === undefined ? { ok: true, value: { verb: 'rollout-status' } } : fail('--interval needs --watch')
  }
  let intervalMs = DEFAULT_WATCH_MS
  if (typeof interval === 'string') {
    const n = parseNonNegativeInt(interval)
    if (n === undefined || n < MIN_WATCH_MS) return fail(`--interval "${interval}" is not a whole number of ms >= ${MIN_WATCH_MS}`)
    intervalMs = n
  }
  return { ok: true, value: { verb: 'rollout-status', watch: { intervalMs } } }
}

function parseRolloutStart(args: readonly string[], flags: Flags): Part<CtlCommand> {
  if (args.length !== 1) return fail(args.length === 0 ? 'rollout start needs a <canary> version' : `rollout start: unexpected "${args[1]}"`)
  const canary = args[0]!
  if (!VERSION_NAME.test(canary)) return fail(`rollout start: "${canary}" is not a version name`)
  const cmd: { baseline?: string; onBreach?: OnBreach; steps?: RolloutStep[] } = {}
  const baseline = flags['baseline']
  if (typeof baseline === 'string') {
    if (!VERSION_NAME.test(baseline)) return fail(`rollout start: --baseline "${baseline}" is not a version name`)
    cmd.baseline = baseline
  }
  const onBreach = flags['on-breach']
  if (onBreach !== undefined) {
    if (onBreach !== 'pause' && onBreach !== 'rollback') return fail('rollout start: --on-breach must be pause or rollback')
    cmd.onBreach = onBreach
  }
  const stepsFlag = flags['steps']
  if (typeof stepsFlag === 'string') {
    const steps = parseSteps(stepsFlag)
    if (!steps.ok) return steps
    cmd.steps = steps.value
  }
  return { ok: true, value: { verb: 'rollout-start', canary, ...cmd } }
}

/** `5:60000,25:60000:approve,100`: canary weights in order, each with an optional hold in ms and approval. */
function parseSteps(s: string): Part<RolloutStep[]> {
  const steps: RolloutStep[] = []
  for (const part of s.split(',')) {
    const fields = part.split(':')
    const approval = fields.length > 1 && fields.at(-1) === 'approve'
    if (approval) fields.pop()
    const [w, hold, extra] = fields
    const weight = parsePercent(w ?? '')
    if (weight === undefined || extra !== undefined)
      return fail(`rollout start: --steps "${part}" is not W[:HOLDMS][:approve]`)
    const step: RolloutStep = { weight }
    if (hold !== undefined) {
      const holdMs = parseNonNegativeInt(hold)
      if (holdMs === undefined)
        return fail(`rollout start: --steps "${part}" has a hold that is not a whole number of ms`)
      step.holdMs = holdMs
    }
    if (approval) step.approval = true
    steps.push(step)
  }
  return { ok: true, value: steps }
}

function parseMirror(args: readonly string[]): Part<CtlCommand> {
  const [sub, ...rest] = args
  if (sub === 'stop') return noMore(rest, 'mirror stop') ?? { ok: true, value: { verb: 'mirror-stop' } }
  if (sub === 'mismatches')
    return noMore(rest, 'mirror mismatches') ?? { ok: true, value: { verb: 'mirror-mismatches' } }
  if (sub !== 'start')
    return fail(sub === undefined ? 'mirror needs start|stop|mismatches' : `unknown mirror command "${sub}"`)
  if (rest.length !== 2) return fail('mirror start needs <version> <percent>')
  const [version, p] = rest as [string, string]
  if (!VERSION_NAME.test(version)) return fail(`mirror start: "${version}" is not a version name`)
  const percent = parsePercent(p)
  if (percent === undefined) return fail(`mirror start: "${p}" is not an integer from 0 to 100`)
  return { ok: true, value: { verb: 'mirror-start', version, percent } }
}

function parsePercent(s: string): number | undefined {
  const n = parseNonNegativeInt(s)
  return n !== undefined && n <= 100 ? n : undefined
}

function parseNonNegativeInt(s: string): number | undefined {
  if (!/^\d{1,15}$/.test(s)) return undefined
  return Number(s)
}

function noMore(rest: readonly string[], what: string): { ok: false; message: string } | undefined {
  return rest.length === 0 ? undefined : fail(`${what} takes no arguments, got "${rest.join(' ')}"`)
}

function then<T>(p: Part<T>, f: (v: T) => CtlCommand): Part<CtlCommand> {
  return p.ok ? { ok: true, value: f(p.value) } : p
}

function ok(command: CtlCommand, json: boolean): ParseResult {
  return { ok: true, value: { command, json } }
}

function fail(message: string): { ok: false; message: string } {
  return { ok: false, message }
}
