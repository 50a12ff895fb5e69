import { CTL_USAGE, type CtlCommand, ctlHelp, type DrainTarget, parseCtlArgs } from './ctl-args.js'
import {
  asObj,
  formatTime,
  stepText,
  formatAudit,
  formatMismatches,
  formatRollout,
  formatRolloutHistory,
  formatState,
  formatWeights,
} from './ctl-format.js'
import type { CliIo } from './io.js'

/**
 * `sluice ctl`: a thin client of the admin API. It sends one request per
 * invocation and turns the answer into text; all the rules live in the proxy.
 * Exit codes are for scripts: 0 success, 1 the API answered an error or could
 * not be reached, 2 usage error; `rollout status --watch` has its own (see
 * watchRollout). With --json, errors are JSON too, on stderr.
 */

export interface CtlIo extends CliIo {
  /** Wall clock for "hold left"; Date.now by default. */
  now?: () => number
}

/** `rollout status --watch` exit codes (README "sluice ctl"), as `kubectl argo rollouts status` gates CI. */
export const WATCH_EXIT = { promoted: 0, rolled_back: 1, paused: 3, unreachable: 4 } as const

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9901'
const DEFAULT_TIMEOUT_MS = 10_000

export interface AdminRequest {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE'
  path: string
  /** JSON-encoded when present; `null` is a body too (PUT /v1/mirror). */
  body?: unknown
}

export async function runCtl(argv: string[], io: CtlIo): Promise<number> {
  const parsed = parseCtlArgs(argv)
  if (!parsed.ok) {
    if (parsed.json) io.stderr(jsonError('SLUICE_USAGE', parsed.message))
    else io.stderr(`error: ${parsed.message}\n\n${CTL_USAGE}`)
    return 2
  }
  const { command, json } = parsed.value
  if (command.verb === 'help') {
    io.stdout(ctlHelp(command.topic))
    return 0
  }
  const target = adminTarget(io.env)
  if (!target.ok) {
    if (json) io.stderr(jsonError('SLUICE_USAGE', target.message))
    else io.stderr(`error: ${target.message}\n\n${CTL_USAGE}`)
    return 2
  }
  if (command.verb === 'rollout-status' && command.watch) return watchRollout(target.value, io, json, command.watch.intervalMs)
  const answer = await ask(target.value, requestFor(command), io, json)
  if (answer === undefined) return 1
  if (json) io.stdout(jsonAnswer(command, answer))
  else io.stdout(render(command, answer.body, (io.now ?? Date.now)()))
  return 0
}

/** The answer of a 2xx, or undefined after printing why there is none (text or JSON). */
async function ask(target: AdminTarget, req: AdminRequest, io: CtlIo, json: boolean): Promise<Answer | undefined> {
  let answer: Answer
  try {
    answer = await send(target, req)
  } catch (err) {
    const message = `cannot reach admin API at ${target.url}: ${describeFailure(err)}`
    io.stderr(json ? jsonError('SLUICE_ADMIN_UNREACHABLE', message) : `error: ${message}\n`)
    return undefined
  }
  if (answer.status >= 200 && answer.status <= 299) return answer
  if (!json) io.stderr(formatApiError(answer.status, answer.body, answer.text, target.token !== undefined))
  else if (asObj(asObj(answer.body)?.['error'])) io.stderr(JSON.stringify(answer.body) + '\n')
  else io.stderr(jsonError(`HTTP_${answer.status}`, answer.text.trim().split('\n')[0] ?? ''))
  return undefined
}

/** The API's answer as JSON; `rollout status` gives the rollout alone, not the whole state. */
function jsonAnswer(command: Exclude<CtlCommand, { verb: 'help' }>, answer: Answer): string {
  if (answer.body === undefined) return ensureNewline(answer.text)
  const body = command.verb === 'rollout-status' ? (asObj(answer.body)?.['rollout'] ?? null) : answer.body
  return JSON.stringify(body, null, 2) + '\n'
}

function jsonError(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } }) + '\n'
}

/**
 * `rollout status --watch`: polls the state, prints the rollout whenever its
 * status, step, phase, awaited condition or reason changes (one JSON line
 * each with --json), and exits when the rollout is over: 0 promoted, 1
 * rolled back or aborted, 3 paused, 4 when the admin API cannot be reached
 * or refuses. A rollout already over (or none) is reported at once with its
 * code; with none ever started, 1.
 */
export async function watchRollout(target: AdminTarget, io: CtlIo, json: boolean, intervalMs: number): Promise<number> {
  const now = io.now ?? Date.now
  let last: string | undefined
  for (;;) {
    const answer = await ask(target, { method: 'GET', path: '/v1/state' }, io, json)
    if (answer === undefined) return WATCH_EXIT.unreachable
    const rollout = asObj(asObj(answer.body)?.['rollout']) ?? { status: 'idle' }
    const status = typeof rollout['status'] === 'string' ? rollout['status'] : 'idle'
    const seen = JSON.stringify([status, rollout['step'], rollout['phase'], rollout['awaiting'], rollout['reason']])
    if (seen !== last) {
      last = seen
      io.stdout(json ? JSON.stringify(rollout) + '\n' : watchLine(rollout, now()))
    }
    if (status === 'promoted') return WATCH_EXIT.promoted
    if (status === 'rolled_back') return WATCH_EXIT.rolled_back
    if (status === 'paused') return WATCH_EXIT.paused
    if (status !== 'progressing') {
      if (!json) io.stderr('no rollout to watch: none has run on this proxy\n')
      return WATCH_EXIT.rolled_back
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** One line of the watch: `<time>  progressing  green vs blue  step 2 of 3 (canary weight 50)  awaiting approval`. */
function watchLine(r: Record<string, unknown>, now: number): string {
  const parts = [formatTime(now), String(r['status'] ?? 'idle')]
  if (typeof r['canary'] === 'string') parts.push(`${r['canary']} vs ${String(r['baseline'] ?? '-')}`)
  const step = stepText(r)
  if (step !== '-') parts.push(`step ${step}`)
  if (typeof r['awaiting'] === 'string') parts.push(`awaiting ${r['awaiting']}`)
  if (typeof r['reason'] === 'string') parts.push(`reason: ${r['reason']}`)
  return parts.join('  ') + '\n'
}

/** The one admin API call a command makes. */
export function requestFor(c: Exclude<CtlCommand, { verb: 'help' }>): AdminRequest {
  switch (c.verb) {
    case 'state':
    case 'rollout-status':
      return { method: 'GET', path: '/v1/state' }
    case 'weights':
      return { method: 'PUT', path: '/v1/weights', body: c.weights }
    case 'drain':
    case 'undrain':
      return { method: 'POST', path: `/v1/${c.verb}`, body: c.target }
    case 'reload':
      return { method: 'POST', path: '/v1/reload' }
    case 'restart':
      return { method: 'POST', path: '/v1/restart' }
    case 'audit':
      return { method: 'GET', path: '/v1/audit' }
    case 'rollout-start': {
      const body: Record<string, unknown> = { canary: c.canary }
      if (c.baseline !== undefined) body['baseline'] = c.baseline
      if (c.onBreach !== undefined) body['onBreach'] = c.onBreach
      if (c.steps !== undefined) body['steps'] = c.steps
      return { method: 'POST', path: '/v1/rollout', body }
    }
    case 'rollout':
      return { method: 'POST', path: `/v1/rollout/${c.action}` }
    case 'rollout-history':
      return { method: 'GET', path: '/v1/rollouts' }
    case 'mirror-start':
      return { method: 'PUT', path: '/v1/mirror', body: { version: c.version, percent: c.percent } }
    case 'mirror-stop':
      return { method: 'PUT', path: '/v1/mirror', body: null }
    case 'mirror-mismatches':
      return { method: 'GET', path: '/v1/mirror/mismatches' }
    case 'instances-add':
      return { method: 'POST', path: '/v1/instances', body: { version: c.version, url: c.url } }
    case 'instances-remove':
      return { method: 'DELETE', path: '/v1/instances', body: { url: c.url } }
  }
}

/** `error: CODE: message (path)`, then the problems of a rejected reload, one per line. */
export function formatApiError(status: number, body: unknown, text: string, tokenSet: boolean): string {
  const e = asObj(asObj(body)?.['error'])
  let out: string
  if (e && typeof e['code'] === 'string') {
    const path = typeof e['path'] === 'string' && e['path'] !== '' ? ` (${e['path']})` : ''
    out = `error: ${e['code']}: ${String(e['message'] ?? '')}${path}\n`
    const problems = Array.isArray(e['problems']) ? e['problems'] : []
    for (const p of problems) {
      const o = asObj(p)
      if (o) out += `  ${o['path'] ? `${String(o['path'])}: ` : ''}${String(o['message'] ?? '')}\n`
    }
  } else {
    const first = text.trim().split('\n')[0] ?? ''
    out = `error: HTTP ${status}${first ? `: ${first}` : ''}\n`
  }
  if (status === 401 && !tokenSet) out += 'hint: SLUICE_ADMIN_TOKEN is not set\n'
  return out
}

function render(c: Exclude<CtlCommand, { verb: 'help' }>, body: unknown, now: number): string {
  switch (c.verb) {
    case 'state':
      return formatState(body, now)
    case 'rollout-status':
      return formatRollout(asObj(body)?.['rollout'], now)
    case 'weights':
      return `weights  ${formatWeights(asObj(body)?.['weights'] ?? c.weights)}\n`
    case 'drain':
      return `draining ${targetText(c.target)}; in-flight work finishes (watch it with: sluice ctl state)\n`
    case 'undrain':
      return `undrained ${targetText(c.target)}\n`
    case 'reload':
      return 'reloaded\n'
    case 'restart':
      return 'restart begun: workers are replaced one at a time (sluice ctl state shows restart.status)\n'
    case 'audit':
      return formatAudit(body)
    case 'rollout-start':
      return 'rollout started\n' + formatRollout(rolloutIn(body), now)
    case 'rollout': {
      const done = { pause: 'paused', resume: 'resumed', promote: 'promoted', abort: 'aborted', approve: 'approved' }[c.action]
      const r = rolloutIn(body)
      return `rollout ${done}\n` + (r ? formatRollout(r, now) : '')
    }
    case 'rollout-history':
      return formatRolloutHistory(body)
    case 'mirror-start':
      return `mirroring ${c.percent}% of eligible requests to ${c.version}\n`
    case 'mirror-stop':
      return 'mirroring stopped\n'
    case 'mirror-mismatches':
      return formatMismatches(body)
    case 'instances-add':
      return `added ${c.url} to ${c.version}; it takes traffic once a probe passes\n`
    case 'instances-remove':
      return `removing ${c.url}: it drains, then leaves (watch it with: sluice ctl state)\n`
  }
}

/** The rollout controls may answer with the rollout itself or with the whole state. */
function rolloutIn(body: unknown): unknown {
  const o = asObj(body)
  if (!o) return undefined
  if (asObj(o['rollout'])) return o['rollout']
  return typeof o['status'] === 'string' ? o : undefined
}

function targetText(t: DrainTarget): string {
  return 'version' in t ? `version ${t.version}` : `instance ${t.url}`
}

export interface AdminTarget {
  url: string
  token: string | undefined
  timeoutMs: number
}

function adminTarget(env: NodeJS.ProcessEnv): { ok: true; value: AdminTarget } | { ok: false; message: string } {
  const raw = env['SLUICE_ADMIN_URL'] || DEFAULT_ADMIN_URL
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    return { ok: false, message: `SLUICE_ADMIN_URL "${raw}" is not a valid URL` }
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return { ok: false, message: `SLUICE_ADMIN_URL "${raw}" must be an http:// or https:// URL` }
  }
  const t = env['SLUICE_ADMIN_TIMEOUT_MS']
  const timeoutMs = t ? Number(t) : DEFAULT_TIMEOUT_MS
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
    return { ok: false, message: `SLUICE_ADMIN_TIMEOUT_MS "${t}" is not a positive whole number of ms` }
  }
  // A path prefix is kept so that an admin API behind another proxy (https://host/sluice) works.
  const url = raw.replace(/\/+$/, '')
  return { ok: true, value: { url, token: env['SLUICE_ADMIN_TOKEN'] || undefined, timeoutMs } }
}

interface Answer {
  status: number
  /** Parsed JSON, or undefined when the body is empty or not JSON. */
  body: unknown
  text: string
}

async function send(target: AdminTarget, req: AdminRequest): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (target.token !== undefined) headers['authorization'] = `Bearer ${target.token}`
  const init: RequestInit = { method: req.method, headers, signal: AbortSignal.timeout(target.timeoutMs) }
  // Even without a body: a token-less admin refuses a POST/PUT that is not JSON (README "Admin API").
  if (req.method !== 'GET') headers['content-type'] = 'application/json'
  if ('body' in req) init.body = JSON.stringify(req.body)
  const res = await fetch(target.url + req.path, init)
  const text = await res.text()
  let body: unknown
  try {
    body = text === '' ? undefined : JSON.parse(text)
  } catch {
    body = undefined
  }
  return { status: res.status, body, text }
}

/** fetch hides the socket error under `cause` (an AggregateError when every address failed). */
function describeFailure(err: unknown): string {
  let e: unknown = err
  while (e instanceof Error && e.message === 'fetch failed' && e.cause !== undefined) e = e.cause
  if (e instanceof AggregateError && e.errors.length > 0) e = e.errors[0]
  if (e instanceof Error) {
    if (e.name === 'TimeoutError') return 'no answer in time (SLUICE_ADMIN_TIMEOUT_MS)'
    const code = (e as { code?: unknown }).code
    return e.message || (typeof code === 'string' ? code : e.name)
  }
  return String(e)
}

function ensureNewline(s: string): string {
  return s.endsWith('\n') || s === '' ? s : s + '\n'
}
