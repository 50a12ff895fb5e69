import { Agent, request } from 'undici'

export interface LoadResult {
  sent: number
  ok: number
  /** Requests that got a 5xx or no response at all. */
  failed: number
  failures: string[]
  /** For each failure, the number of requests sent before the failed one started (its place in the run). */
  failedAt: number[]
  byBody: Map<string, number>
}

export interface LoadOptions {
  url: string
  /** Concurrent keep-alive request loops. */
  concurrency?: number
  /** Sticky key for loop i, or undefined for keyless; default: every other loop uses a key. */
  keyFor?: (loop: number, n: number) => string | undefined
  method?: string
  path?: string
  /** Hard bound on requests per loop. */
  maxPerLoop?: number
  /** Give up on a response after this long (a real client's timeout); default: undici's 300 s. */
  timeoutMs?: number
}

/**
 * A steady keep-alive load for "nothing fails while X changes" tests:
 * bounded in count, stopped by `stop()`. Counts failures as the README
 * defines them (5xx or no response).
 */
export function steadyLoad(opts: LoadOptions): { stop(): Promise<LoadResult>; result: LoadResult } {
  const result: LoadResult = { sent: 0, ok: 0, failed: 0, failures: [], failedAt: [], byBody: new Map() }
  const timeouts = opts.timeoutMs === undefined ? {} : { headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs }
  const dispatcher = new Agent({ connections: opts.concurrency ?? 8, keepAliveTimeout: 10_000, ...timeouts })
  let running = true
  const keyFor = opts.keyFor ?? ((loop, n) => (loop % 2 === 0 ? `user-${loop}-${n % 50}` : undefined))
  const loops = Array.from({ length: opts.concurrency ?? 8 }, async (_, loop) => {
    for (let n = 0; running && n < (opts.maxPerLoop ?? 100_000); n++) {
      const key = keyFor(loop, n)
      const seq = result.sent++
      try {
        const res = await request(opts.url + (opts.path ?? '/'), {
          method: (opts.method ?? 'GET') as 'GET',
          dispatcher,
          headers: key ? { 'x-user-id': key } : {},
        })
        const text = await res.body.text()
        if (res.statusCode >= 500) {
          result.failed++
          result.failedAt.push(seq)
          if (result.failures.length < 20) result.failures.push(`${res.statusCode} ${text.slice(0, 200)}`)
        } else {
          result.ok++
          const name = res.headers['x-upstream']
          if (typeof name === 'string') result.byBody.set(name, (result.byBody.get(name) ?? 0) + 1)
        }
      } catch (err) {
        result.failed++
        result.failedAt.push(seq)
        if (result.failures.length < 20) result.failures.push(String(err))
      }
    }
  })
  return {
    result,
    async stop() {
      running = false
      await Promise.all(loops)
      await dispatcher.close()
      return result
    },
  }
}
