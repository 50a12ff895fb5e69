import type { StateStore } from '../../src/state/store.js'
import { startProxy, type TestProxy } from './proxy.js'
import { startUpstream, type TestUpstream, type UpstreamHandler } from './upstream.js'

export interface BlueGreenUpstreams {
  /** Answers as `blue` (JSON naming itself) unless given a handler. */
  blue: TestUpstream
  green: TestUpstream
  /** The config's `versions`: one instance each. */
  versions: { blue: { instances: { url: string }[] }; green: { instances: { url: string }[] } }
  close(): Promise<void>
}

export interface BlueGreen extends BlueGreenUpstreams {
  proxy: TestProxy
  /** Stops the proxy, then both upstreams. */
  close(): Promise<void>
}

/** A blue and a green upstream, for tests that put several proxies in front of the same two. */
export async function blueGreenUpstreams(
  handlers: { blue?: UpstreamHandler; green?: UpstreamHandler } = {},
): Promise<BlueGreenUpstreams> {
  const blue = await startUpstream('blue', handlers.blue)
  const green = await startUpstream('green', handlers.green)
  return {
    blue,
    green,
    versions: { blue: { instances: [{ url: blue.url }] }, green: { instances: [{ url: green.url }] } },
    async close() {
      await blue.close()
      await green.close()
    },
  }
}

/**
 * A blue and a green upstream and the real proxy in front of them, with
 * `raw` merged into the config (weights, analysis, admin...).
 */
export async function blueGreen(
  raw: Record<string, unknown> = {},
  opts: { blue?: UpstreamHandler; green?: UpstreamHandler; store?: StateStore } = {},
): Promise<BlueGreen> {
  const ups = await blueGreenUpstreams(opts)
  const proxy = await startProxy(
    { versions: ups.versions, ...raw },
    opts.store ? { store: opts.store } : {},
  )
  return {
    ...ups,
    proxy,
    async close() {
      await proxy.stop()
      await ups.close()
    },
  }
}
