import { request } from 'undici'
import { admin, startProxy, type TestProxy } from './proxy.js'
import { startUpstream, type TestUpstream, type UpstreamHandler } from './upstream.js'
import { vi } from 'vitest'

export interface UpstreamSpec {
  /** The x-upstream name it answers with. */
  name: string
  handler?: UpstreamHandler
}

export interface DeployFixture {
  proxy: TestProxy
  /** Upstreams by version, in declared order; replace an entry after a restart so close() finds it. */
  ups: Record<string, TestUpstream[]>
  close(): Promise<void>
}

/**
 * Upstreams for each version and the real proxy in front of them (sticky on
 * x-user-id, probes every 250 ms unless `raw` says otherwise), started and
 * ready: every instance probed once.
 */
export async function startDeployFixture(
  versions: Record<string, UpstreamSpec[]>,
  raw: Record<string, unknown> = {},
  /** Runs once the upstreams listen, before the proxy starts (and probes them). */
  beforeProxy?: (ups: Record<string, TestUpstream[]>) => void,
): Promise<DeployFixture> {
  const ups: Record<string, TestUpstream[]> = {}
  const config: Record<string, { instances: { url: string }[] }> = {}
  for (const [version, specs] of Object.entries(versions)) {
    ups[version] = []
    for (const s of specs) ups[version].push(await startUpstream(s.name, s.handler))
    config[version] = { instances: ups[version].map((u) => ({ url: u.url })) }
  }
  beforeProxy?.(ups)
  const proxy = await startProxy({
    versions: config,
    sticky: { keys: ['header:x-user-id'] },
    health: { intervalMs: 250, timeoutMs: 250 },
    ...raw,
  })
  await vi.waitFor(
    async () => {
      if ((await admin(proxy, 'GET', '/readyz')).status !== 200) throw new Error('proxy not ready')
    },
    { timeout: 10_000, interval: 20 },
  )
  return {
    proxy,
    ups,
    async close() {
      await proxy.stop()
      for (const list of Object.values(ups)) for (const u of list) await u.close()
    },
  }
}

/** The upstream name that answers a GET with this sticky key now. */
export async function upstreamOf(proxyUrl: string, key: string, path = '/'): Promise<string | undefined> {
  const res = await request(proxyUrl + path, { headers: { 'x-user-id': key } })
  await res.body.dump()
  return res.headers['x-upstream'] as string | undefined
}

/** `n` sticky keys that the proxy sends to the upstream named `name` now. */
export async function keysLandingOn(proxyUrl: string, name: string, n: number): Promise<string[]> {
  const keys: string[] = []
  for (let i = 0; keys.length < n && i < 500; i++) {
    if ((await upstreamOf(proxyUrl, `key-${i}`)) === name) keys.push(`key-${i}`)
  }
  if (keys.length < n) throw new Error(`only ${keys.length} of ${n} keys land on ${name}`)
  return keys
}
