import { causeOf } from './gate-webhook.js'
import type { GateCheck } from './rollout-machine.js'

export interface PrometheusGate {
  name: string
  url: string
  query: string
  min?: number | undefined
  max?: number | undefined
  timeoutMs: number
  headers: Record<string, string>
}

/** `$canary` and `$baseline` in the query become the rollout's version names. */
export function promQuery(query: string, canary: string, baseline: string): string {
  return query.replaceAll('$canary', canary).replaceAll('$baseline', baseline)
}

/**
 * A Prometheus gate: one instant query through the HTTP API
 * (`GET /api/v1/query`). It passes only on exactly one sample within
 * `min`/`max` (both inclusive). No sample (no data) fails and never passes:
 * a conversion rate nobody measures proves nothing. Several samples fail
 * (the query must aggregate). An unreachable server or an answer that is
 * not a Prometheus success is an error.
 */
export async function checkPrometheus(gate: PrometheusGate, canary: string, baseline: string): Promise<GateCheck> {
  const name = gate.name
  const url = new URL('api/v1/query', gate.url.endsWith('/') ? gate.url : gate.url + '/')
  url.searchParams.set('query', promQuery(gate.query, canary, baseline))
  let body: { status?: string; error?: string; data?: { resultType?: string; result?: unknown } }
  try {
    const res = await fetch(url, { headers: gate.headers, signal: AbortSignal.timeout(gate.timeoutMs) })
    const text = await res.text()
    try {
      body = JSON.parse(text) as typeof body
    } catch {
      return error(name, `answered ${res.status} with no Prometheus JSON`)
    }
    if (body.status !== 'success') return error(name, `answered ${res.status}: ${body.error ?? 'not a success'}`)
  } catch (err) {
    const e = err as Error
    return error(name, e.name === 'TimeoutError' ? `no answer within ${gate.timeoutMs} ms` : `failed: ${causeOf(e)}`)
  }
  const values = samples(body.data)
  if (values === undefined) return error(name, `answered a result of type ${body.data?.resultType}`)
  if (values.length === 0) return { gate: name, result: 'fail', reason: `gate ${name}: no data` }
  if (values.length > 1) {
    return { gate: name, result: 'fail', reason: `gate ${name}: ${values.length} samples, the query must return one` }
  }
  const v = values[0]!
  const shown = Number.isFinite(v) ? String(Number(v.toPrecision(6))) : String(v)
  if (Number.isNaN(v)) return { gate: name, result: 'fail', reason: `gate ${name}: value NaN` }
  if (gate.min !== undefined && v < gate.min) {
    return { gate: name, result: 'fail', reason: `gate ${name}: ${shown} below min ${gate.min}` }
  }
  if (gate.max !== undefined && v > gate.max) {
    return { gate: name, result: 'fail', reason: `gate ${name}: ${shown} above max ${gate.max}` }
  }
  return { gate: name, result: 'pass', reason: `gate ${name}: ${shown} within ${limits(gate)}` }
}

function error(name: string, why: string): GateCheck {
  return { gate: name, result: 'error', reason: `gate ${name}: prometheus ${why}` }
}

function limits(g: PrometheusGate): string {
  if (g.min !== undefined && g.max !== undefined) return `${g.min}..${g.max}`
  return g.min !== undefined ? `min ${g.min}` : `max ${g.max}`
}

/** The sample values of a vector or scalar result; undefined for other result types. */
function samples(data: { resultType?: string; result?: unknown } | undefined): number[] | undefined {
  if (data?.resultType === 'scalar') return [Number((data.result as [number, string])[1])]
  if (data?.resultType !== 'vector' || !Array.isArray(data.result)) return undefined
  return (data.result as { value: [number, string] }[]).map((s) => Number(s.value[1]))
}
