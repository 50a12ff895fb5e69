import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'
import {
  BadRequestError,
  NoUsableInstanceError,
  ShuttingDownError,
  type SluiceError,
  UpstreamFailedError,
  UpstreamTimeoutError,
} from '../errors.js'
import type { Instance } from '../routing/instance.js'
import type { RoutingTable, VersionRoute } from '../routing/table.js'
import { responseHeaderList, upstreamHeaders } from './headers.js'
import type { OutcomeSink } from './outcome.js'
import { sendOwnAnswer } from './own-answer.js'

export interface ForwardContext {
  /** Swapped whole by the control plane; read once per request. */
  readonly routing: { table: RoutingTable }
  readonly sink: OutcomeSink
  readonly retries: number
  readonly headersTimeout: number
  readonly bodyTimeout: number
  readonly proto: string
  /** Set when a graceful stop begins: responses then close their connection. */
  stopping: boolean
  /** Called once the user's request has been sent upstream (mirroring hangs off it). */
  onSent?: ((req: IncomingMessage, key: number, exchange: Exchange) => void) | undefined
  /** Access log line per request, or undefined (off: costs one compare). */
  accessLog?: ((req: IncomingMessage, status: number, ms: number, instance: Instance | undefined) => void) | undefined
}

/**
 * Sees the user's response of a mirrored request as it streams, so the
 * shadow's answer can be compared with it. Set on an Exchange by mirroring
 * only; every other request pays one undefined check per call site.
 */
export interface ResponseTap {
  /**
   * The final (non-1xx) response head: the flat name/value list written to
   * the client (lower-case names, hop-by-hop headers already left out). Not
   * called once the client left.
   */
  start(status: number, headers: readonly (string | string[])[]): void
  data(chunk: Buffer): void
  /** The exchange ended. `cut`: the user did not get the whole response (failure, or the client left). */
  finish(status: number, cut: boolean, ms: number): void
}

/** Errors that happen before a connection exists: the request cannot have reached the application. */
const CONNECT_PHASE = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'EAI_AGAIN',
])
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

const kExchange = Symbol('sluice.exchange')
type TaggedResponse = ServerResponse & { [kExchange]?: Exchange }

/** Client went away: status recorded in metrics (nginx's convention), never counted as an error. */
export const CLIENT_CLOSED = 499

/** Routes and forwards one request. The listener calls this for every request. */
export function forward(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse): void {
  if (req.url?.charCodeAt(0) !== 47 /* / */ && !toOriginForm(req)) {
    ctx.sink.unrouted(400)
    sendOwnAnswer(res, new BadRequestError(`cannot forward the request-target "${req.url}"`), true)
    return
  }
  const headers = req.headers
  if (headers.host === undefined && req.httpVersionMinor === 1 && req.httpVersionMajor === 1) {
    // RFC 9112 3.2: a 1.1 request without Host is answered 400 (Node's own answer had no body).
    ctx.sink.unrouted(400)
    sendOwnAnswer(res, new BadRequestError('an HTTP/1.1 request must carry a Host header'), true)
    return
  }
  const table = ctx.routing.table
  const key = table.keyOf(headers)
  const route = table.chooseVersion(headers, key)
  const instance = route === undefined ? undefined : table.chooseInstance(route, key)
  if (route === undefined || instance === undefined) {
    ctx.sink.unrouted(503)
    sendOwnAnswer(res, ctx.stopping ? new ShuttingDownError() : new NoUsableInstanceError(), ctx.stopping)
    return
  }
  if (ctx.stopping) res.shouldKeepAlive = false
  const ex = new Exchange(ctx, req, res, table, route, key)
  ;(res as TaggedResponse)[kExchange] = ex
  res.once('close', onResponseClose)
  ex.send(instance)
}

/**
 * Rewrites an absolute-form request-target ("GET http://host/p?q", RFC 9112
 * 3.2.2) to origin-form, which is what an upstream expects from a reverse
 * proxy. False for anything else (asterisk-form "OPTIONS *", authority-form):
 * undici cannot send it, and answering it here keeps it from counting as an
 * upstream failure (a client could otherwise get healthy instances ejected).
 */
function toOriginForm(req: IncomingMessage): boolean {
  const target = req.url
  if (target === undefined || !URL.canParse(target)) return false
  const u = new URL(target)
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false
  req.url = u.pathname + u.search
  return true
}

function onResponseClose(this: TaggedResponse): void {
  this[kExchange]?.clientClosed()
}

function onResponseDrain(this: TaggedResponse): void {
  this[kExchange]?.resume()
}

/**
 * One client request's journey upstream, as an undici dispatch handler: no
 * promise, no intermediate stream; response chunks are written straight to
 * the client with backpressure (the upstream read pauses while the client's
 * buffer is full).
 */
export class Exchange implements Dispatcher.DispatchHandler {
  instance!: Instance
  status = 0
  /** Set by mirroring for the requests it copies. */
  tap: ResponseTap | undefined = undefined
  readonly started = performance.now()
  #tries = 0
  #controller: Dispatcher.DispatchController | undefined
  #headers: string[] | undefined
  #responded = false
  #finished = false
  #clientGone = false
  #drainHooked = false

  constructor(
    readonly ctx: ForwardContext,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly table: RoutingTable,
    readonly route: VersionRoute,
    readonly key: number,
  ) {}

  /** The header list sent upstream (set once the request is sent). */
  get upstreamHeaders(): string[] | undefined {
    return this.#headers
  }

  send(instance: Instance): void {
    this.instance = instance
    this.#tries++
    instance.inflight++
    instance.version.inflight++
    const req = this.req
    this.#headers ??= upstreamHeaders(req, this.ctx.proto)
    const pool = instance.pool
    if (pool === undefined) {
      this.onResponseError(undefined, new UpstreamFailedError('instance has no connection pool'))
      return
    }
    pool.dispatch(
      {
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        headers: this.#headers,
        body: hasBody(req.headers) ? req : null,
        headersTimeout: this.ctx.headersTimeout,
        bodyTimeout: this.ctx.bodyTimeout,
      },
      this,
    )
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#clientGone) controller.abort(new Error('client closed'))
    else if (this.#tries === 1 && this.ctx.onSent !== undefined) this.ctx.onSent(this.req, this.key, this)
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return // 1xx informational: Node answers 100-continue itself
    this.#responded = true
    this.status = statusCode
    if (this.#clientGone) return
    const list = responseHeaderList(headers)
    if (this.tap !== undefined) this.tap.start(statusCode, list)
    const res = this.res
    if (this.ctx.stopping) res.shouldKeepAlive = false
    // Node's types say string[] for the flat form; it takes array values (set-cookie) there too.
    const flat = list as string[]
    if (statusMessage) res.writeHead(statusCode, statusMessage, flat)
    else res.writeHead(statusCode, flat)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#clientGone) return
    if (this.tap !== undefined) this.tap.data(chunk)
    if (!this.res.write(chunk)) {
      controller.pause()
      if (!this.#drainHooked) {
        this.#drainHooked = true
        this.res.on('drain', onResponseDrain)
      }
    }
  }

  onResponseEnd(): void {
    if (!this.#clientGone) this.res.end()
    this.#finish(this.status, false)
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.#finished) return
    const instance = this.instance
    if (this.#clientGone) {
      this.#finish(CLIENT_CLOSED, false)
      return
    }
    if (this.#responded) {
      // Bytes already reached the client: never retried, the response is cut.
      this.res.destroy(err)
      this.#finish(this.status, true)
      return
    }
    if (errorCode(err) === 'UND_ERR_INVALID_ARG') {
      // undici refused the request as sent: nothing reached the upstream, and it is not the instance's failure.
      this.status = 400
      sendOwnAnswer(this.res, new BadRequestError(err.message), true)
      this.#finish(400, false)
      return
    }
    if (this.#retryable(err)) {
      const next = this.table.chooseRetry(this.route, this.key, instance)
      if (next !== undefined) {
        this.#release()
        this.ctx.sink.tryFailed(instance, err)
        this.#controller = undefined
        this.send(next)
        return
      }
    }
    const answer: SluiceError = TIMEOUTS.has(errorCode(err))
      ? new UpstreamTimeoutError(err)
      : err instanceof UpstreamFailedError
        ? err
        : new UpstreamFailedError(err)
    this.status = answer.status
    sendOwnAnswer(this.res, answer, this.ctx.stopping)
    this.#finish(answer.status, true)
  }

  /** The client's connection closed before the response ended: stop the upstream work. */
  clientClosed(): void {
    if (this.#finished || this.res.writableFinished) return
    this.#clientGone = true
    this.#controller?.abort(new Error('client closed'))
  }

  resume(): void {
    this.#controller?.resume()
  }

  /**
   * CONTRACT section 4: tried again only when it cannot have reached the
   * application: refused or otherwise failed before connecting, or an
   * idempotent method with no response byte back. A request body already
   * read can never be replayed.
   */
  #retryable(err: Error): boolean {
    if (this.#tries > this.ctx.retries) return false
    const req = this.req
    if (req.readableDidRead || req.destroyed) return false
    if (CONNECT_PHASE.has(errorCode(err))) return true
    const m = req.method
    return m === 'GET' || m === 'HEAD' || m === 'OPTIONS'
  }

  #release(): void {
    this.instance.inflight--
    this.instance.version.inflight--
  }

  #finish(status: number, failed: boolean): void {
    if (this.#finished) return
    this.#finished = true
    this.#release()
    const ms = performance.now() - this.started
    this.ctx.sink.end(this.instance, status, ms, failed)
    this.ctx.accessLog?.(this.req, status, ms, this.instance)
    if (this.tap !== undefined) this.tap.finish(status, failed || this.#clientGone, ms)
  }
}

function hasBody(h: IncomingHttpHeaders): boolean {
  const cl = h['content-length']
  return (cl !== undefined && cl !== '0') || h['transfer-encoding'] !== undefined
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : ''
}
