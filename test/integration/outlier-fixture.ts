import type { UpstreamSpec } from '../helpers/deploy-fixture.js'
import type { RecordedRequest } from '../helpers/recorded-load.js'
import type { UpstreamHandler } from '../helpers/upstream.js'

/** How an instance fails: a 500, a reset connection (no response), or no answer at all (a timeout). */
export type FaultKind = '500' | 'reset' | 'timeout'

/** Changeable at run time: the share of requests that fail, and how. */
export interface Fault {
  kind: FaultKind
  /** 0..1; 1 fails every request. */
  rate: number
}

/** A handler that answers like the default upstream, except for the `fault.rate` share it fails. */
export function faulty(name: string, fault: Fault): UpstreamHandler {
  return (req, res) => {
    req.resume()
    if (fault.rate > 0 && Math.random() < fault.rate) {
      if (fault.kind === 'reset') {
        req.socket.destroy()
        return
      }
      // A hang: the proxy's timeouts.upstreamMs answers 504 (or retries a GET elsewhere).
      if (fault.kind === 'timeout') return
      res.writeHead(500, { 'content-type': 'application/json', 'x-upstream': name })
      res.end(JSON.stringify({ name, error: 'injected' }))
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
    res.end(JSON.stringify({ name }))
  }
}

/** Upstream specs whose names start with their version's (b1, b2: blue; g1: green), all failing as `fault` says. */
export function faultySpecs(counts: Record<string, number>, fault: Fault): Record<string, UpstreamSpec[]> {
  const out: Record<string, UpstreamSpec[]> = {}
  for (const [version, n] of Object.entries(counts)) {
    out[version] = Array.from({ length: n }, (_, k) => {
      const name = `${version[0]}${k + 1}`
      return { name, handler: faulty(name, fault) }
    })
  }
  return out
}

/** The version that answered (the first letter of the x-upstream name), per second of the run. */
export interface SplitWindow {
  second: number
  answered: number
  byVersion: Record<string, number>
}

/**
 * The split as the clients saw it: requests answered by each version, in
 * windows of `windowMs` from the first request. Requests with no upstream
 * name (the proxy's own 502/504 after a failed retry) are left out.
 */
export function splitWindows(
  records: readonly RecordedRequest[],
  versions: Record<string, string>,
  windowMs = 1_000,
): SplitWindow[] {
  const t0 = records[0]?.sentAt ?? 0
  const windows: SplitWindow[] = []
  for (const r of records) {
    if (r.doneAt === 0 || r.upstream === undefined) continue
    const version = versions[r.upstream[0]!]
    if (version === undefined) continue
    const n = Math.floor((r.sentAt - t0) / windowMs)
    const w = (windows[n] ??= { second: n, answered: 0, byVersion: {} })
    w.answered++
    w.byVersion[version] = (w.byVersion[version] ?? 0) + 1
  }
  return windows.filter((w) => w !== undefined)
}

/** A version's share of the answered requests in a window, in percent points. */
export function share(w: SplitWindow, version: string): number {
  return w.answered === 0 ? 0 : (100 * (w.byVersion[version] ?? 0)) / w.answered
}
