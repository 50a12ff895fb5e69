import { admin } from './proxy.js'
import { vi } from 'vitest'

/** One instance as GET /v1/state shows it. */
export interface InstanceView {
  url: string
  healthy: boolean
  draining: boolean
  ejected: boolean
  usable: boolean
  inflight: number
}

/** The state of instance `index` of `version`, read through the admin API. */
export async function instanceState(p: { adminUrl: string }, version: string, index: number): Promise<InstanceView> {
  const s = await admin(p, 'GET', '/v1/state')
  return s.body.versions[version].instances[index]
}

/** Polls GET /v1/state until instance `index` of `version` satisfies `check`. */
export function waitForInstance(
  p: { adminUrl: string },
  version: string,
  index: number,
  check: (i: InstanceView) => boolean,
  what: string,
  timeoutMs?: number,
): Promise<void> {
  return vi.waitFor(
    async () => {
      const i = await instanceState(p, version, index)
      if (!check(i)) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(i)}`)
    },
    { timeout: timeoutMs ?? 10_000, interval: 20 },
  )
}
