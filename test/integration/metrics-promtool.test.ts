import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from '../helpers/cli.js'
import { promtool } from '../helpers/promtool.js'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { refusedUrl } from '../helpers/raw-http.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

const PACKAGE_VERSION = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version

async function scrape(p: TestProxy): Promise<string> {
  const res = await fetch(`${p.adminUrl}/metrics`)
  expect(res.status).toBe(200)
  return res.text()
}

/** The value of one exact sample (`name{labels}` as written), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

function phases(text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^sluice_rollout_phase\{canary="green",phase="(\w+)"\} (\S+)$/gm)) out[m[1]!] = Number(m[2])
  return out
}

describe('/metrics for an SRE: promtool-clean, upstream label, build, workers, retries, rollout phase', () => {
  let blue: TestUpstream
  let green: TestUpstream
  let refused: string
  let proxy: TestProxy

  beforeAll(async () => {
    refused = await refusedUrl()
    blue = await startUpstream('blue')
    green = await startUpstream('green')
    proxy = await startProxy({
      // No probes, no ejection: the refusing instance stays usable, so its tries are retried on the other.
      versions: { blue: { instances: [{ url: refused }, { url: blue.url }] }, green: { instances: [{ url: green.url }] } },
      weights: { blue: 100 },
      retries: { attempts: 1 },
      outlier: { consecutiveFailures: 0 },
    })
  })
  afterAll(async () => {
    await proxy?.stop()
    await blue?.close()
    await green?.close()
  })

  it('passes promtool check metrics after traffic, with retries counted per version', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`${proxy.url}/r${i}`)
      await res.text()
      statuses.push(res.status)
    }
    expect(statuses.every((s) => s === 200)).toBe(true)

    const text = await scrape(proxy)
    const check = await promtool(['check', 'metrics'], text)
    expect(check).toEqual({ code: 0, output: '' })

    const retries = sample(text, 'sluice_retries_total{version="blue"}')!
    expect(retries).toBeGreaterThanOrEqual(1)
    // Every request that first tried the refusing instance was retried once, and only those.
    expect(retries).toBeLessThanOrEqual(40)
    expect(blue.hits).toBe(40)
    expect(sample(text, 'sluice_requests_total{version="blue",code="200"}')).toBe(40)
    expect(sample(text, 'sluice_retries_total{version="green"}')).toBeUndefined()
  })

  it('labels each instance `upstream` (never `instance`, which Prometheus sets) and names the build and workers', async () => {
    const text = await scrape(proxy)
    expect(sample(text, `sluice_upstream_healthy{version="blue",upstream="${blue.url}"}`)).toBe(1)
    expect(sample(text, `sluice_upstream_usable{version="green",upstream="${green.url}"}`)).toBe(1)
    expect(text).not.toMatch(/^sluice_\w+\{[^}]*\binstance="/m)
    expect(
      sample(
        text,
        `sluice_build_info{sluice_version="${PACKAGE_VERSION}",node_version="${process.versions.node}"}`,
      ),
    ).toBe(1)
    expect(sample(text, 'sluice_workers')).toBe(1)
  })

  it('shows the rollout phase: none before a rollout, then progressing, paused and rolled_back', async () => {
    expect(phases(await scrape(proxy))).toEqual({})
    const steps = [{ weight: 10, holdMs: 600_000 }, { weight: 100 }]
    expect((await admin(proxy, 'POST', '/v1/rollout', { canary: 'green', baseline: 'blue', steps })).status).toBe(201)
    const off = { mirror: 0, progressing: 0, paused: 0, promoted: 0, rolled_back: 0 }
    expect(phases(await scrape(proxy))).toEqual({ ...off, progressing: 1 })
    expect((await admin(proxy, 'POST', '/v1/rollout/pause')).status).toBe(200)
    expect(phases(await scrape(proxy))).toEqual({ ...off, paused: 1 })
    expect((await admin(proxy, 'POST', '/v1/rollout/abort')).status).toBe(200)
    const text = await scrape(proxy)
    expect(phases(text)).toEqual({ ...off, rolled_back: 1 })
    expect(await promtool(['check', 'metrics'], text)).toEqual({ code: 0, output: '' })
  })
})
