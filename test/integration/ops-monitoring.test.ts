import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { ROOT } from '../helpers/cli.js'
import { promtool, seriesNames } from '../helpers/promtool.js'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const RULES_DIR = `${ROOT}config/prometheus`
const RULES = `${RULES_DIR}/sluice-rules.yaml`
const DASHBOARD = `${ROOT}config/grafana/sluice.json`

interface Rule {
  record?: string
  alert?: string
  expr: string
}

function rules(): Rule[] {
  const doc = parseYaml(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }
  return doc.groups.flatMap((g) => g.rules)
}

/** Every PromQL query of the dashboard: panel targets and templating queries. */
function dashboardQueries(): string[] {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: { type: string; targets?: { expr: string }[] }[]
    templating: { list: { type: string; query: unknown }[] }
  }
  const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))
  for (const v of dash.templating.list) {
    if (v.type !== 'query') continue
    const q = typeof v.query === 'string' ? v.query : (v.query as { query: string }).query
    exprs.push(q.replace(/^label_values\((.+),\s*\w+\)$/, '$1'))
  }
  return exprs
}

/** Grafana's variables as Prometheus would see them after substitution. */
function substituted(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$job', '.*')
}

/** Metric names a query reads (recorded `level:metric:op` names are returned apart). */
function metricNames(expr: string): { metrics: string[]; recorded: string[] } {
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '')
  const recorded = [...bare.matchAll(/[a-z_]+:[a-z0-9_:]+/g)].map((m) => m[0])
  const rest = bare.replace(/[a-z_]+:[a-z0-9_:]+/g, ' ')
  const metrics = [...rest.matchAll(/\b(?:sluice|process|nodejs)_[a-z0-9_]+\b/g)].map((m) => m[0])
  return { metrics, recorded }
}

describe('config/prometheus and config/grafana against promtool and a live proxy', () => {
  let up: TestUpstream
  let proxy: TestProxy
  let live: Set<string>
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ops-'))

  beforeAll(async () => {
    up = await startUpstream('blue')
    proxy = await startProxy({ versions: { blue: { instances: [{ url: up.url }] } } })
    for (let i = 0; i < 5; i++) await (await fetch(`${proxy.url}/`)).text()
    live = seriesNames(await (await fetch(`${proxy.adminUrl}/metrics`)).text())
  })
  afterAll(async () => {
    await proxy?.stop()
    await up?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('promtool check rules accepts the rules file', async () => {
    const r = await promtool(['check', 'rules', RULES])
    expect(r.code, r.output).toBe(0)
    expect(r.output).toMatch(/SUCCESS: \d+ rules found/)
  })

  it('promtool test rules passes the rules unit tests', async () => {
    const r = await promtool(['test', 'rules', 'sluice-rules.test.yaml'], '', RULES_DIR)
    expect(r.code, r.output).toBe(0)
    expect(r.output).toContain('SUCCESS')
  })

  it('has the five alerts and recording rules for rate, errors and latency', () => {
    const all = rules()
    expect(all.filter((r) => r.alert).map((r) => r.alert)).toEqual([
      'SluiceErrorRateHigh',
      'SluiceRolledBack',
      'SluiceNoUsableInstance',
      'SluiceStateStoreDown',
      'SluiceDiscoveryFailing',
    ])
    expect(all.filter((r) => r.record).length).toBeGreaterThanOrEqual(4)
  })

  it('every metric the rules and the dashboard read exists on a live proxy', () => {
    const recordedHere = new Set(rules().flatMap((r) => (r.record ? [r.record] : [])))
    const used = new Set<string>()
    for (const expr of [...rules().map((r) => r.expr), ...dashboardQueries()]) {
      const { metrics, recorded } = metricNames(expr)
      for (const m of metrics) used.add(m)
      for (const r of recorded) expect(recordedHere, `recorded name ${r}`).toContain(r)
    }
    const missing = [...used].filter((m) => !live.has(m))
    expect(missing).toEqual([])
    // What the dashboard must show (README, Kubernetes and monitoring).
    const dashUsed = new Set(dashboardQueries().flatMap((e) => metricNames(e).metrics))
    for (const m of [
      'sluice_requests_total',
      'sluice_request_duration_seconds_bucket',
      'sluice_version_weight',
      'sluice_rollout_step',
      'sluice_rollout_phase',
      'sluice_upstream_healthy',
      'sluice_websocket_connections',
      'sluice_mirror_requests_total',
      'sluice_retries_total',
      'sluice_outlier_ejections_total',
    ])
      expect(dashUsed, m).toContain(m)
  })

  it('the example Prometheus config passes promtool check config (Kubernetes discovery swapped for static)', async () => {
    // Debian's promtool is built without Kubernetes service discovery; the relabelling and rules are what is checked.
    const doc = parseYaml(readFileSync(`${RULES_DIR}/prometheus.yaml`, 'utf8')) as {
      rule_files: string[]
      scrape_configs: Record<string, unknown>[]
    }
    expect(doc.rule_files).toEqual(['sluice-rules.yaml'])
    const job = doc.scrape_configs.find((j) => j.job_name === 'sluice')!
    expect(job.kubernetes_sd_configs).toEqual([{ role: 'pod', namespaces: { names: ['shop'] } }])
    delete job.kubernetes_sd_configs
    job.static_configs = [{ targets: ['127.0.0.1:9901'] }]
    doc.rule_files = [RULES]
    const file = join(dir, 'prometheus.yaml')
    writeFileSync(file, toYaml(doc))
    const r = await promtool(['check', 'config', file])
    expect(r.code, r.output).toBe(0)
  })

  it('every dashboard query is valid PromQL (promtool parses each as a recording rule)', async () => {
    const queries = dashboardQueries().map(substituted)
    expect(queries.length).toBeGreaterThan(20)
    const file = join(dir, 'dashboard-queries.yaml')
    writeFileSync(
      file,
      toYaml({ groups: [{ name: 'dashboard', rules: queries.map((expr, i) => ({ record: `dashboard:q${i}`, expr })) }] }),
    )
    const r = await promtool(['check', 'rules', file])
    expect(r.code, r.output).toBe(0)
  })
})
