import { Client } from 'undici'
import { transportOptions } from '../proxy/transport-options.js'
import { PLAIN_HTTP1, type UpstreamTransport } from '../routing/instance.js'

export interface ProbeConnectionOptions {
  path: string
  /** The whole probe's budget: connect, answer and body, a retry included. */
  timeoutMs: number
  /** health.grpc: an HTTP/2 instance is asked grpc.health.v1.Health/Check instead of GET path. */
  grpc?: boolean | undefined
}

const HEADERS = { 'user-agent': 'sluice-health' }
const GRPC_HEADERS = { 'user-agent': 'sluice-health', 'content-type': 'application/grpc', te: 'trailers' }
const GRPC_HEALTH_PATH = '/grpc.health.v1.Health/Check'
/** One length-prefixed message: an empty HealthCheckRequest (service "": the server as a whole). */
const GRPC_HEALTH_REQUEST = Buffer.from([0, 0, 0, 0, 0])
/** HealthCheckResponse{status: SERVING}: field 1, varint 1, after the 5-byte prefix. */
const GRPC_SERVING = Buffer.from([0, 0, 0, 0, 2, 8, 1])
const DUMP_LIMIT = 64 * 1024

/**
 * One instance's probe connection, kept alive from probe to probe: a new
 * connection per probe cost the proxy several percent of a core at 200
 * instances. It is its own connection, not the data path's pool, so a probe
 * never queues behind user traffic and user traffic never behind a probe.
 *
 * An upstream may close an idle kept-alive connection just as a probe is
 * written to it (its keep-alive timeout racing the probe). That reset says
 * nothing about the instance, so a probe that fails at the connection level
 * on a reused connection is sent once more on a fresh one, within the same
 * budget. A timeout is never retried: a hung instance fails in timeoutMs.
 */
export class ProbeConnection {
  readonly #client: Client
  readonly #url: URL
  readonly #grpc: boolean
  #connected = false

  constructor(
    /** The instance's URL; the probe path is appended to it. */
    url: string,
    readonly opts: ProbeConnectionOptions,
    /** The instance's version's transport: probes connect the way requests do. */
    transport: UpstreamTransport = PLAIN_HTTP1,
  ) {
    this.#url = new URL(url + opts.path)
    this.#grpc = opts.grpc === true && transport.protocol !== 'http1'
    this.#client = new Client(this.#url.origin, {
      ...transportOptions(transport, url, opts.timeoutMs),
      // Closed before Node's default server keep-alive timeout (5 s) unless
      // the upstream's Keep-Alive hint says otherwise; a longer probe
      // interval then simply connects afresh each time.
      keepAliveTimeout: 4_000,
      keepAliveTimeoutThreshold: 1_000,
    })
    this.#client.on('connect', () => {
      this.#connected = true
    })
    this.#client.on('disconnect', () => {
      this.#connected = false
    })
    // Connect failures also reject the probe's request; this only keeps the event handled.
    this.#client.on('connectionError', () => {})
  }

  /** Whether the instance answered 2xx within the budget. */
  async check(): Promise<boolean> {
    // Not AbortSignal.timeout: its timer runs out (and builds an error) even after the probe answered.
    const budget = new AbortController()
    const timer = setTimeout(() => budget.abort(), this.opts.timeoutMs)
    const signal = budget.signal
    try {
      const reused = this.#connected
      const first = await this.#attempt(signal)
      if (first !== 'reset' || !reused || signal.aborted) return first === 'pass'
      return (await this.#attempt(signal)) === 'pass'
    } finally {
      clearTimeout(timer)
    }
  }

  async #attempt(signal: AbortSignal): Promise<'pass' | 'fail' | 'reset'> {
    if (this.#grpc) return this.#grpcAttempt(signal)
    try {
      const res = await this.#client.request({
        path: this.#url.pathname + this.#url.search,
        method: 'GET',
        headers: HEADERS,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        signal,
      })
      // A longer body is cut off with its connection; the status has answered already.
      await res.body.dump({ limit: DUMP_LIMIT, signal })
      return res.statusCode >= 200 && res.statusCode < 300 ? 'pass' : 'fail'
    } catch (err) {
      return signal.aborted || isTimeout(err) ? 'fail' : 'reset'
    }
  }

  /** SERVING: grpc.health.v1 answers NOT_SERVING (2) or an error status otherwise. */
  async #grpcAttempt(signal: AbortSignal): Promise<'pass' | 'fail' | 'reset'> {
    try {
      const res = await this.#client.request({
        path: GRPC_HEALTH_PATH,
        method: 'POST',
        headers: GRPC_HEADERS,
        body: GRPC_HEALTH_REQUEST,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        signal,
      })
      const body = Buffer.from(await res.body.arrayBuffer())
      // A server sends a response message only with status OK (an error is trailers-only, its status in
      // the head), and undici's HTTP/2 client may lose the trailers: the SERVING message is the proof.
      const status = res.headers['grpc-status'] ?? res.trailers['grpc-status']
      return res.statusCode === 200 && (status === undefined || status === '0') && body.equals(GRPC_SERVING)
        ? 'pass'
        : 'fail'
    } catch (err) {
      return signal.aborted || isTimeout(err) ? 'fail' : 'reset'
    }
  }

  /** Closes the connection; a probe in flight fails. */
  close(): void {
    if (!this.#client.destroyed) this.#client.destroy().catch(() => {})
  }
}

function isTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT'
}
