import { Agent, request } from 'undici'

/** One client request of a recorded load. */
export interface RecordedRequest {
  loop: number
  key: string | undefined
  /** performance.now() when sent and when the body ended or it failed. */
  sentAt: number
  doneAt: number
  /** 0 when no response came back. */
  status: number
  /** The x-upstream header of the answer. */
  upstream: string | undefined
  /** The response asked to close the connection. */
  closed: boolean
  error: string | undefined
}

export interface RecordedLoadOptions {
  url: string
  /** Concurrent keep-alive request loops (default 8). */
  concurrency?: number
  /** Sticky key for loop i, request n; default: even loops use one of 20 keys, odd loops none. */
  keyFor?: (loop: number, n: number) => string | undefined
  path?: string
  /** Hard bound on requests per loop. */
  maxPerLoop?: number
}

/**
 * A steady keep-alive load that records every request with its timing, so
 * a test can ask what happened to the requests sent before, during or after
 * a change. Bounded in count; ended by `stop()`.
 */
export function recordedLoad(opts: RecordedLoadOptions): {
  records: RecordedRequest[]
  stop(): Promise<RecordedRequest[]>
} {
  const records: RecordedRequest[] = []
  const concurrency = opts.concurrency ?? 8
  const dispatcher = new Agent({ connections: concurrency, keepAliveTimeout: 10_000 })
  const keyFor = opts.keyFor ?? ((loop, n) => (loop % 2 === 0 ? `user-${(loop * 7 + n) % 20}` : undefined))
  let running = true
  const loops = Array.from({ length: concurrency }, async (_, loop) => {
    for (let n = 0; running && n < (opts.maxPerLoop ?? 50_000); n++) {
      const key = keyFor(loop, n)
      const r: RecordedRequest = {
        loop,
        key,
        sentAt: performance.now(),
        doneAt: 0,
        status: 0,
        upstream: undefined,
        closed: false,
        error: undefined,
      }
      records.push(r)
      try {
        const res = await request(opts.url + (opts.path ?? '/'), {
          dispatcher,
          headers: key ? { 'x-user-id': key } : {},
        })
        await res.body.dump()
        r.status = res.statusCode
        const up = res.headers['x-upstream']
        r.upstream = typeof up === 'string' ? up : undefined
        r.closed = res.headers.connection === 'close'
      } catch (err) {
        r.error = `${(err as { code?: string }).code ?? ''} ${String(err)}`
      }
      r.doneAt = performance.now()
    }
  })
  return {
    records,
    async stop() {
      running = false
      await Promise.all(loops)
      await dispatcher.close()
      return records
    },
  }
}

/** As the README counts them: a failed request is a 5xx or one that got no response. */
export function failed(records: readonly RecordedRequest[]): RecordedRequest[] {
  return records.filter((r) => r.status === 0 || r.status >= 500)
}

/** A short description of failures for assertion messages. */
export function describeFailures(records: readonly RecordedRequest[]): string {
  return failed(records)
    .slice(0, 10)
    .map((r) => `${r.status} ${r.error ?? ''}`.trim())
    .join('; ')
}

/** Resolves once the load has completed `n` more requests. */
export async function moreRequests(records: readonly RecordedRequest[], n: number, timeoutMs = 10_000): Promise<void> {
  const target = records.filter((r) => r.doneAt > 0).length + n
  const deadline = Date.now() + timeoutMs
  while (records.filter((r) => r.doneAt > 0).length < target) {
    if (Date.now() > deadline) throw new Error(`load made no progress: fewer than ${n} requests in ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
