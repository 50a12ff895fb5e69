import { type Align, formatPairs, formatTable } from './text-table.js'

/**
 * Readable text for the admin API's answers. The input is whatever JSON the
 * API sent: fields are read defensively, unknown ones are ignored and missing
 * ones print as "-", so an older or newer proxy still gets a useful table.
 */

type Obj = Record<string, unknown>

const BAR_WIDTH = 20

/** `GET /v1/state` as sections: versions, instances, rollout, analysis, mirror, store. */
export function formatState(state: unknown, now: number): string {
  const s = asObj(state) ?? {}
  const weights = asObj(s['weights']) ?? {}
  const versions = asObj(s['versions']) ?? {}
  const analysis = asObj(s['analysis']) ?? {}
  const names = unique([...Object.keys(versions), ...Object.keys(weights), ...Object.keys(analysis)])
  const sections = [
    section('versions', formatVersions(names, weights, versions)),
    section('instances', formatInstances(versions)),
    section('rollout', formatRolloutPairs(s['rollout'], now)),
    section('analysis', formatAnalysis(names, analysis)),
  ]
  const mirror = asObj(s['mirror'])
  if (mirror) sections.push(section('mirror', formatMirrorPairs(mirror)))
  const store = asObj(s['store'])
  if (store)
    sections.push(
      `store  ${str(store['kind']) ?? '-'} (${store['up'] === false ? 'down' : store['up'] === true ? 'up' : '?'})`,
    )
  return sections.join('\n\n') + '\n'
}

/** The rollout alone, for `rollout status` and the answers of the rollout controls. */
export function formatRollout(rollout: unknown, now: number): string {
  return section('rollout', formatRolloutPairs(rollout, now)) + '\n'
}

/** `GET /v1/audit`, oldest first as the API sends it. */
export function formatAudit(body: unknown): string {
  const entries = listOf(body, 'entries', 'audit')
  if (entries.length === 0) return 'no audit entries\n'
  const rows = entries.map((e) => [
    formatTime(e['at']),
    str(e['action']) ?? '-',
    str(e['source']) ?? '-',
    str(e['actor']) ?? '-',
    `${formatChange(e['before'])} -> ${formatChange(e['after'])}`,
    str(e['reason']) ?? '-',
  ])
  return formatTable(['AT', 'ACTION', 'SOURCE', 'ACTOR', 'BEFORE -> AFTER', 'REASON'], rows) + '\n'
}

/** `GET /v1/rollouts`: one line per rollout with the report's figures. */
export function formatRolloutHistory(body: unknown): string {
  const list = listOf(body, 'rollouts')
  if (list.length === 0) return 'no rollouts yet\n'
  const rows = list.map((r) => {
    const report = asObj(r['report']) ?? asObj(r['figures']) ?? r
    const figures = (v: unknown) => {
      const f = asObj(v)
      return f ? `${count(f['requests'])} / ${rate(f['errorRate'])} / ${ms(f['p95Ms'])}` : '-'
    }
    return [
      formatTime(pick(r, report, 'startedAt', 'start', 'started')),
      formatTime(pick(r, report, 'endedAt', 'end', 'ended')),
      `${str(r['canary']) ?? '-'} vs ${str(r['baseline']) ?? '-'}`,
      str(pick(r, report, 'outcome', 'status')) ?? '-',
      stepsReached(pick(r, report, 'stepsReached', 'steps', 'step')),
      figures(report['canary']),
      figures(report['baseline']),
      str(pick(r, report, 'reason')) ?? '-',
    ]
  })
  const header = [
    'STARTED',
    'ENDED',
    'CANARY',
    'OUTCOME',
    'STEPS',
    'CANARY REQ/ERR/P95',
    'BASELINE REQ/ERR/P95',
    'REASON',
  ]
  return formatTable(header, rows) + '\n'
}

/**
 * `GET /v1/mirror/mismatches`. Its entries have no fixed fields (README "Mirroring (shadow traffic)"), so
 * the columns are the union of their fields, in first-seen order.
 */
export function formatMismatches(body: unknown): string {
  const list = listOf(body, 'mismatches', 'entries')
  if (list.length === 0) return 'no mismatches\n'
  const keys = unique(list.flatMap((e) => Object.keys(e)))
  // Own properties only: a key such as `valueOf` on one entry must not read Object.prototype on another.
  const rows = list.map((e) =>
    keys.map((k) => {
      const v = Object.hasOwn(e, k) ? e[k] : undefined
      return k === 'at' ? formatTime(v) : formatValue(v)
    }),
  )
  return formatTable(keys.map(headerOf), rows) + '\n'
}

/** A weights object as `blue=90 green=10`. */
export function formatWeights(weights: unknown): string {
  const w = asObj(weights)
  if (!w) return '-'
  const parts = Object.entries(w).map(
    ([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`,
  )
  return parts.length > 0 ? parts.join(' ') : '-'
}

function formatVersions(names: readonly string[], weights: Obj, versions: Obj): string {
  if (names.length === 0) return '  (none)'
  const rows = names.map((v) => {
    const w = num(weights[v]) ?? 0
    const instances = instancesOf(versions[v])
    const usable = instances.filter((i) => i['healthy'] === true && i['draining'] !== true && i['ejected'] !== true)
    return [v, String(w), bar(w), String(instances.length), String(usable.length)]
  })
  return formatTable(['VERSION', 'WEIGHT', '', 'INSTANCES', 'USABLE'], rows, {
    align: ['left', 'right', 'left', 'right', 'right'],
    indent: '  ',
  })
}

interface Column {
  title: string
  align: Align
  cell: (version: string, i: Obj) => string
  /** Optional columns show only when some instance carries the field. */
  field?: string
}

const INSTANCE_COLUMNS: readonly Column[] = [
  { title: 'VERSION', align: 'left', cell: (v) => v },
  { title: 'URL', align: 'left', cell: (_, i) => str(i['url']) ?? '-' },
  { title: 'SOURCE', align: 'left', cell: (_, i) => str(i['source']) ?? '-', field: 'source' },
  { title: 'HEALTHY', align: 'left', cell: (_, i) => yesNo(i['healthy']) },
  { title: 'DRAINING', align: 'left', cell: (_, i) => yesNo(i['draining']) },
  { title: 'EJECTED', align: 'left', cell: (_, i) => yesNo(i['ejected']), field: 'ejected' },
  { title: 'INFLIGHT', align: 'right', cell: (_, i) => count(i['inflight']) },
  { title: 'WEBSOCKETS', align: 'right', cell: (_, i) => count(i['websockets']), field: 'websockets' },
]

function formatInstances(versions: Obj): string {
  const all = Object.entries(versions).flatMap(([v, spec]) => instancesOf(spec).map((i) => ({ v, i })))
  if (all.length === 0) return '  (none)'
  const cols = INSTANCE_COLUMNS.filter((c) => c.field === undefined || all.some(({ i }) => i[c.field!] !== undefined))
  const rows = all.map(({ v, i }) => cols.map((c) => c.cell(v, i)))
  return formatTable(
    cols.map((c) => c.title),
    rows,
    { align: cols.map((c) => c.align), indent: '  ' },
  )
}

function formatRolloutPairs(value: unknown, now: number): string {
  const r = asObj(value)
  if (!r) return '  none'
  const status = str(r['status']) ?? '-'
  const pairs: [string, string][] = [['status', status]]
  if (status === 'idle' && (r['canary'] ?? null) === null) return formatPairs(pairs, '  ')
  pairs.push(['canary', `${str(r['canary']) ?? '-'} (baseline ${str(r['baseline']) ?? '-'})`])
  pairs.push(['step', stepText(r)])
  const hold = holdRemainingMs(r, now)
  if (hold !== undefined) pairs.push(['hold left', `${Math.ceil(hold / 1000)} s`])
  if (r['onBreach'] !== undefined) pairs.push(['on breach', str(r['onBreach']) ?? '-'])
  if (typeof r['awaiting'] === 'string') pairs.push(['awaiting', str(r['awaiting'])!])
  pairs.push(['reason', str(r['reason']) ?? '-'])
  return formatPairs(pairs, '  ')
}

function formatAnalysis(names: readonly string[], analysis: Obj): string {
  // RATE only from a proxy that reports it (an older one does not).
  const withRate = names.some((v) => asObj(analysis[v])?.['requestsPerSec'] !== undefined)
  const rows = names.flatMap((v) => {
    const a = asObj(analysis[v])
    if (!a) return []
    // A version without requests in the window has no error rate or latency: "-", not a measured 0.
    const idle = num(a['requests']) === 0
    const row = [v, count(a['requests']), count(a['errors']), idle ? '-' : rate(a['errorRate']), idle ? '-' : ms(a['p95Ms'])]
    if (withRate) row.splice(1, 0, perSecond(a['requestsPerSec']))
    return [row]
  })
  if (rows.length === 0) return '  (no figures yet)'
  const header = ['VERSION', 'REQUESTS', 'ERRORS', 'ERROR RATE', 'P95']
  if (withRate) header.splice(1, 0, 'RATE')
  return formatTable(header, rows, { align: header.map((_, i) => (i === 0 ? 'left' : 'right')), indent: '  ' })
}

function formatMirrorPairs(m: Obj): string {
  return formatPairs(
    [
      ['version', str(m['version']) ?? '-'],
      ['percent', m['percent'] === undefined ? '-' : `${count(m['percent'])}%`],
      ['copied', count(m['copied'])],
      ['mismatches', count(m['mismatches'])],
      ['shadow p95', ms(m['shadowP95Ms'])],
    ],
    '  ',
  )
}

/** The current step for people: `2 of 3 (canary weight 50)`, 1-based. */
export function stepText(r: Obj): string {
  if (r['phase'] === 'mirror') return 'mirror phase (before the first step)'
  const step = num(r['step'])
  if (step === undefined || step < 0) return '-'
  const steps = Array.isArray(r['steps']) ? r['steps'] : undefined
  if (!steps) return String(step + 1)
  const weight = num(asObj(steps[step])?.['weight'])
  // `step` is the API's 0-based index; people count from 1.
  const w = weight === undefined ? '' : ` (canary weight ${weight})`
  return `${step + 1} of ${steps.length}${w}`
}

/**
 * `holdRemainingMs` when the API computes it, else an absolute `holdUntil`,
 * else the current step's `holdMs` counted from `holdStartedAt` while progressing.
 */
function holdRemainingMs(r: Obj, now: number): number | undefined {
  const left = num(r['holdRemainingMs'])
  if (left !== undefined) return Math.max(0, left)
  const until = r['holdUntil']
  const t = typeof until === 'string' ? Date.parse(until) : num(until)
  if (t !== undefined && !Number.isNaN(t)) return Math.max(0, t - now)
  const started = num(r['holdStartedAt'])
  const step = num(r['step'])
  const steps = r['steps']
  if (r['status'] !== 'progressing' || started === undefined || step === undefined || !Array.isArray(steps))
    return undefined
  const hold = num(asObj(steps[step])?.['holdMs'])
  return hold === undefined ? undefined : Math.max(0, started + hold - now)
}

/** A count, or the weights of the steps reached (`5 25 50`). */
function stepsReached(v: unknown): string {
  if (!Array.isArray(v)) return count(v)
  const weights = v.map((s) => num(asObj(s)?.['weight']))
  return weights.every((w) => w !== undefined) && weights.length > 0 ? weights.join(' ') : String(v.length)
}

function section(title: string, body: string): string {
  return `${title}\n${body}`
}

function bar(weight: number): string {
  const filled = Math.round((Math.max(0, Math.min(100, weight)) / 100) * BAR_WIDTH)
  return '#'.repeat(filled) + '.'.repeat(BAR_WIDTH - filled)
}

const MAX_CELL = 60

/**
 * An audit entry's before or after. The rollout's entries hold weights, the
 * rollout's status and step and the mirror: `blue=75 green=25, rollout
 * progressing step 2, mirror off`, whole (never cut); anything else as
 * formatValue.
 */
export function formatChange(v: unknown): string {
  const o = asObj(v)
  const keys = o ? Object.keys(o) : []
  if (!o || keys.length === 0 || !keys.every((k) => k === 'weights' || k === 'rollout' || k === 'mirror'))
    return formatValue(v)
  const parts: string[] = []
  if ('weights' in o) parts.push(formatWeights(o['weights']))
  if ('rollout' in o) parts.push(rolloutBrief(asObj(o['rollout'])))
  if ('mirror' in o) {
    const m = asObj(o['mirror'])
    parts.push(m ? `mirror ${str(m['version']) ?? '-'} ${count(m['percent'])}%` : 'mirror off')
  }
  return parts.join(', ')
}

function rolloutBrief(r: Obj | undefined): string {
  if (!r) return 'no rollout'
  const status = str(r['status']) ?? '-'
  if (r['phase'] === 'mirror') return `rollout ${status} (mirror phase)`
  const step = num(r['step'])
  return step === undefined || step < 0 || status === 'idle' ? `rollout ${status}` : `rollout ${status} step ${step + 1}`
}

/**
 * One cell: flat objects (weights, a drain's `{version, draining}`) as
 * `a=1 b=x`, deeper ones as compact JSON, cut at 60 characters.
 */
export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return '-'
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  const o = asObj(v)
  const flat = o && Object.values(o).every((x) => x === null || ['number', 'string', 'boolean'].includes(typeof x))
  // JSON.stringify answers undefined for functions and symbols, which a cell must still show.
  const text = flat ? formatWeights(o) : (JSON.stringify(v) ?? String(v))
  return [...text].length > MAX_CELL ? [...text].slice(0, MAX_CELL - 1).join('') + '…' : text
}

/** Epoch ms or an ISO string, shown as `2024-05-01 12:00:00Z` (UTC). */
export function formatTime(v: unknown): string {
  const t = typeof v === 'string' ? Date.parse(v) : num(v)
  if (t === undefined || Number.isNaN(t)) return str(v) ?? '-'
  return new Date(t)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z')
}

function rate(v: unknown): string {
  const n = num(v)
  return n === undefined ? '-' : `${(n * 100).toFixed(2)}%`
}

function perSecond(v: unknown): string {
  const n = num(v)
  return n === undefined ? '-' : `${n < 10 ? n.toFixed(1) : Math.round(n)}/s`
}

function ms(v: unknown): string {
  const n = num(v)
  return n === undefined ? '-' : `${n.toFixed(1)} ms`
}

function count(v: unknown): string {
  const n = num(v)
  return n === undefined ? '-' : String(n)
}

function yesNo(v: unknown): string {
  return v === true ? 'yes' : v === false ? 'no' : '-'
}

function headerOf(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toUpperCase()
}

function instancesOf(spec: unknown): Obj[] {
  const list = asObj(spec)?.['instances']
  return objects(list)
}

/** The API's lists are arrays; a wrapper object `{ <key>: [...] }` is accepted too. */
function listOf(body: unknown, ...keys: string[]): Obj[] {
  let list: unknown = body
  const o = asObj(body)
  if (o) list = keys.map((k) => o[k]).find(Array.isArray)
  return objects(list)
}

function objects(list: unknown): Obj[] {
  const out: Obj[] = []
  if (Array.isArray(list)) for (const e of list) if (asObj(e)) out.push(e)
  return out
}

function pick(a: Obj, b: Obj, ...keys: string[]): unknown {
  for (const k of keys) {
    if (a[k] !== undefined) return a[k]
    if (b[k] !== undefined) return b[k]
  }
  return undefined
}

function unique(xs: readonly string[]): string[] {
  return [...new Set(xs)]
}

export function asObj(v: unknown): Obj | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

function str(v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return undefined
}
