import type { RuntimeInstance } from '../state/desired.js'

/** Where an instance came from: the config file, a DNS or SRV lookup, or the admin API. */
export type InstanceSource = 'config' | 'dns' | 'srv' | 'api'

/** A version's latest discovered addresses, as origins. */
export interface Discovered {
  readonly source: 'dns' | 'srv'
  readonly urls: readonly string[]
}

/**
 * The instances every version should have, by origin, with where each came
 * from. A URL belongs to one version only: the config file claims first,
 * then the admin API, then discovery (in declared version order), so a DNS
 * name that also resolves to another version's address never moves it.
 */
export function wantedMembers(
  versions: readonly { readonly name: string; readonly instances: readonly string[] }[],
  api: readonly RuntimeInstance[],
  discovered: ReadonlyMap<string, Discovered>,
): Map<string, Map<string, InstanceSource>> {
  const out = new Map<string, Map<string, InstanceSource>>()
  const claimed = new Set<string>()
  const claim = (version: string, url: string, source: InstanceSource) => {
    const members = out.get(version)
    if (members === undefined || claimed.has(url)) return
    claimed.add(url)
    members.set(url, source)
  }
  for (const v of versions) out.set(v.name, new Map())
  for (const v of versions) for (const url of v.instances) claim(v.name, url, 'config')
  for (const i of api) claim(i.version, i.url, 'api')
  for (const v of versions) {
    const d = discovered.get(v.name)
    if (d) for (const url of d.urls) claim(v.name, url, d.source)
  }
  return out
}

/** What to do to a version's current instances (by URL) so that it has the wanted ones. */
export function diffMembers(
  current: readonly string[],
  wanted: ReadonlyMap<string, InstanceSource>,
): { add: string[]; gone: string[] } {
  const have = new Set(current)
  const add: string[] = []
  for (const url of wanted.keys()) if (!have.has(url)) add.push(url)
  const gone = current.filter((url) => !wanted.has(url))
  return { add, gone }
}
