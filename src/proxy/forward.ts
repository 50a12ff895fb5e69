import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import {
  BadRequestError,
  describeCause,
  ExpectationFailedError,
  HeadTooLargeError,
  MethodNotAllowedError,
  NoHttp2PathError,
  NoUsableInstanceError,
  RequestTimeoutError,
  ShuttingDownError,
  type SluiceError,
  UpstreamFailedError,
  UpstreamTimeoutError,
  UpstreamTlsError,
} from '../errors.js'
import type { Instance } from '../routing/instance.js'
import type { RoutingTable, VersionRoute } from '../routing/table.js'
import { endConnection, relayDrains, resumeReading, stopReading } from './client-socket.js'
import type { Deadlines, Watched } from './deadlines.js'
import { kSlot } from './dense-set.js'
import {
  GRPC_CANCELLED,
  GRPC_DEADLINE_EXCEEDED,
  GRPC_NONE,
  GRPC_UNKNOWN,
  endWithHead,
  grpcStatusForAnswer,
  headerObject,
  grpcStatusOf,
  grpcTimeoutMs,
  isGrpc,
} from './grpc.js'
import { echoRequestId, headBytesH2, responseHeaderList, upstreamHeaders, upstreamHeadersH2 } from './headers.js'
import type { OutcomeSink } from './outcome.js'
import { sendOwnAnswer } from './own-answer.js'
import { requestIdOf } from './request-id.js'

export interface ForwardContext {
  /** Swapped whole by the control plane; read once per request. */
  readonly routing: { table: RoutingTable }
  readonly sink: OutcomeSink
  readonly retries: number
  /** timeouts.upstreamMs: the wait for a response head, across every try of a request. */
  readonly headersTimeout: number
  readonly bodyTimeout: number
  /** timeouts.connectMs: added once to the head deadline (connecting, or waiting in a full pool). */
  readonly connectMs: number
  /** timeouts.requestBodyMs: from the end of the request head to its body's last byte. */
  readonly requestBodyMs: number
  readonly deadlines: Deadlines
  /** Where the detail of an upstream failure goes (the client gets only the code and a short message). */
  readonly logFailure: (err: SluiceError, instance: Instance | undefined, requestId: string) => void
  readonly proto: string
  /** limits.maxHeaderBytes: an HTTP/2 request head larger than this gets 431 (Node's parser checks HTTP/1.1). */
  readonly maxHeaderBytes: number
  /** requestId.header, lower-case: the request ID's header upstream and back (README "Request IDs"). */
  readonly requestIdHeader: string
  /** Set when a graceful stop begins: responses then close their connection. */
  stopping: boolean
  /**
   * A retiring worker's connections close spread over `ms` from `since`
   * (performance.now()), each at its own moment, instead of all after their
   * next response: see closesNow. Unset: every one closes at once.
   */
  stopSpread?: { readonly since: number; readonly ms: number } | undefined
  /** Called once the user's request has been sent upstream (mirroring hangs off it). */
  onSent?: ((req: IncomingMessage, key: number, exchange: Exchange) => void) | undefined
  /** Access log line per request, or undefined (off: costs one compare). */
  accessLog?: AccessLog | undefined
}

/**
 * One access log line: `socket` is the client's (a request's own may be
 * detached by the time it ends), `bytes` the response body bytes written.
 */
export type AccessLog = (
  req: IncomingMessage,
  socket: { readonly remoteAddress?: string | undefined },
  status: number,
  ms: number,
  instance: Instance | undefined,
  requestId: string,
  bytes: number,
) => void

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
/**
 * The upstream's certificate was refused: the TLS handshake failed, so the
 * request never reached the application (retried as a connect failure).
 */
const TLS_REFUSED = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
])
for (const code of TLS_REFUSED) CONNECT_PHASE.add(code)

const kExchange = Symbol('sluice.exchange')
type TaggedResponse = ServerResponse & { [kExchange]?: Exchange }

/** Client went away: status recorded in metrics (nginx's convention), never counted as an error. */
export const CLIENT_CLOSED = 499

const kBusy = Symbol('sluice.busy')
const kWaiting = Symbol('sluice.waiting')
const kClosing = Symbol('sluice.closing')
const kLast = Symbol('sluice.last')

/**
 * A client connection as forward() sees it: whether one of its requests is
 * in flight upstream (or its turns are over), and the pipelined requests
 * read behind it (req, res, req, res, ...). trackClientSocket sets every
 * field on each new connection so every socket keeps one shape.
 */
export type ClientSocket = Socket & ClientConnection

/**
 * What forward() keeps per client connection. An HTTP/1.1 socket carries it
 * itself; an HTTP/2 session, whose streams are independent and never wait
 * for one another, gets one such record that only the access log reads.
 */
export interface ClientConnection {
  [kBusy]: boolean
  [kWaiting]: (IncomingMessage | ServerResponse)[] | undefined
  /** A malformed request arrived: the connection closes after its answer in progress. */
  [kClosing]: boolean
  /** The response of the request routed last: the one in progress, if any. */
  [kLast]: ServerResponse | undefined
  readonly remoteAddress?: string | undefined
  /** A TCP connection's; when it closes during a retiring worker's spread (closesNow). */
  readonly remotePort?: number | undefined
}

const kConnection = Symbol('sluice.connection')
type TrackedSession = ServerHttp2Session & { [kConnection]?: ClientConnection }

/** Gives a new HTTP/2 session its connection record (the client's address, read once). */
export function trackH2Session(session: ServerHttp2Session): void {
  ;(session as TrackedSession)[kConnection] = {
    [kBusy]: false,
    [kWaiting]: undefined,
    [kClosing]: false,
    [kLast]: undefined,
    remoteAddress: session.socket.remoteAddress,
  }
}

export function trackClientSocket(socket: Socket): void {
  const s = socket as ClientSocket
  s[kBusy] = false
  s[kWaiting] = undefined
  s[kClosing] = false
  s[kLast] = undefined
}

/**
 * Routes and forwards one request. The listener calls this for every
 * request. A client connection has at most one request in flight upstream
 * (README "Proxying rules"): Node hands over every pipelined request at
 * once, so a request read while another of its connection is in flight
 * waits its turn, and the connection is not read further meanwhile (as
 * nginx does). Node writes the answers in order.
 */
export function forward(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket as ClientSocket
  const waiting = socket[kWaiting]
  // Behind a waiting request too, not only a busy connection: between two
  // turns, a request read early (Node resumes reading once its answers are
  // written) must not overtake the ones before it.
  if (socket[kBusy] || waiting !== undefined) {
    if (waiting === undefined) socket[kWaiting] = [req, res]
    else waiting.push(req, res)
    stopReading(socket)
    return
  }
  route(ctx, req, res, socket)
}

function route(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, socket: ClientSocket): void {
  socket[kLast] = res
  if (req.url?.charCodeAt(0) !== 47 /* / */ && !toOriginForm(req)) {
    unrouted(ctx, res, socket, new BadRequestError(`cannot forward the request-target "${req.url}"`), true)
    return
  }
  const headers = req.headers
  if (headers.host === undefined && req.httpVersionMinor === 1 && req.httpVersionMajor === 1) {
    // RFC 9112 3.2: a 1.1 request without Host is answered 400 (Node's own answer had no body).
    unrouted(ctx, res, socket, new BadRequestError('an HTTP/1.1 request must carry a Host header'), true)
    return
  }
  const table = ctx.routing.table
  const key = table.keyOf(headers)
  const route = table.chooseVersion(headers, key)
  const instance = route === undefined ? undefined : table.chooseInstance(route, key)
  const id = requestIdOf(headers[ctx.requestIdHeader])
  if (route === undefined || instance === undefined) {
    const err = ctx.stopping ? new ShuttingDownError() : new NoUsableInstanceError()
    unrouted(ctx, res, socket, err, ctx.stopping, id)
    return
  }
  if (!route.version.http2 && isGrpc(headers['content-type'])) {
    unrouted(ctx, res, socket, new NoHttp2PathError(route.version.name), ctx.stopping, id)
    return
  }
  if (ctx.stopping && closesNow(ctx, socket)) res.shouldKeepAlive = false
  const ex = new Exchange(ctx, req, res, table, route, key, socket, id)
  ;(res as TaggedResponse)[kExchange] = ex
  res.once('close', onResponseClose)
  socket[kBusy] = true
  ctx.deadlines.watch(ex)
  ex.send(instance)
}

/**
 * Routes and forwards one HTTP/2 request (node:http2's compatibility API,
 * which gives the same request and response methods forward() uses). Its
 * streams are independent: no turns. `:authority` becomes Host for the
 * upstream and pseudo-headers are never forwarded (upstreamHeadersH2); a
 * body is whatever follows a HEADERS frame without END_STREAM, with or
 * without content-length.
 */
export function forwardH2(ctx: ForwardContext, h2req: Http2ServerRequest, h2res: Http2ServerResponse): void {
  const req = h2req as unknown as IncomingMessage
  const res = h2res as unknown as ServerResponse
  const session = h2req.stream.session as TrackedSession | undefined
  const conn = session?.[kConnection]
  if (conn === undefined) {
    h2req.stream.close()
    return
  }
  // What `Connection: close` is to HTTP/1.1 during drain.delayMs: a GOAWAY, this stream and the open ones still served.
  if (ctx.stopping && !session!.closed) session!.close()
  const headers = req.headers
  const id = requestIdOf(headers[ctx.requestIdHeader])
  if (headBytesH2(req.rawHeaders) > ctx.maxHeaderBytes) {
    unrouted(ctx, res, conn, new HeadTooLargeError(), false, id)
    return
  }
  if (req.url?.charCodeAt(0) !== 47 /* / */ && !toOriginForm(req)) {
    unrouted(ctx, res, conn, new BadRequestError(`cannot forward the request-target "${req.url}"`), false, id)
    return
  }
  const table = ctx.routing.table
  const key = table.keyOf(headers)
  const route = table.chooseVersion(headers, key)
  const instance = route === undefined ? undefined : table.chooseInstance(route, key)
  if (route === undefined || instance === undefined) {
    unrouted(ctx, res, conn, ctx.stopping ? new ShuttingDownError() : new NoUsableInstanceError(), false, id)
    return
  }
  if (!route.version.http2 && isGrpc(headers['content-type'])) {
    unrouted(ctx, res, conn, new NoHttp2PathError(route.version.name), false, id)
    return
  }
  const ex = new Exchange(ctx, req, res, table, route, key, conn, id, !h2req.stream.endAfterHeaders)
  ;(res as TaggedResponse)[kExchange] = ex
  res.once('close', onResponseClose)
  ctx.deadlines.watch(ex)
  ex.send(instance)
}

/**
 * CONNECT over HTTP/2 (RFC 9113 section 8.5): 405 with the JSON body, as over
 * HTTP/1.1. The client keeps its side of a CONNECT stream open for the
 * tunnel it asked for, so the stream is closed (NO_ERROR) once answered, not
 * left holding a stream slot.
 */
export function refuseConnectH2(ctx: ForwardContext, h2req: Http2ServerRequest, h2res: Http2ServerResponse): void {
  h2res.once('finish', () => h2req.stream.close())
  refuse(ctx, h2req, h2res, new MethodNotAllowedError())
}

/**
 * A request whose Expect is not 100-continue: 417 instead of Node's bare
 * one. Node hands it over in place of the request and reads its body as its
 * own, so the connection carries on.
 */
export function refuseExpectation(
  ctx: ForwardContext,
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
): void {
  refuse(ctx, req, res, new ExpectationFailedError())
}

/** A request Node hands over in place of 'request': an own answer, counted and logged like any other. */
function refuse(
  ctx: ForwardContext,
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
  err: SluiceError,
): void {
  const conn =
    req.httpVersionMajor === 2
      ? ((req as Http2ServerRequest).stream.session as TrackedSession | undefined)?.[kConnection]
      : (req.socket as ClientSocket)
  if (conn === undefined) {
    res.destroy()
    return
  }
  unrouted(ctx, res as ServerResponse, conn, err, false)
}

/** Answered by the proxy without an instance; a closing answer ends the connection's turns. */
function unrouted(
  ctx: ForwardContext,
  res: ServerResponse,
  socket: ClientConnection,
  err: SluiceError,
  close: boolean,
  id = requestIdOf(res.req.headers[ctx.requestIdHeader]),
): void {
  ctx.sink.unrouted(err.status)
  const bytes = sendOwnAnswer(res, err, close, ctx.requestIdHeader, id)
  if (lastOnConnection(res)) socket[kBusy] = true
  ctx.accessLog?.(res.req, socket, err.status, 0, undefined, id, bytes)
}

/**
 * Whether this response closes its connection (our own closing answer, an
 * HTTP/1.0 or `Connection: close` client, a stop). Requests the client
 * pipelined behind it are never forwarded then: Node still reads and hands
 * them over, but their answers could not reach the client, so the upstream
 * would act on requests nobody is answered for. Node's flag, set when the
 * head is written.
 */
function lastOnConnection(res: ServerResponse): boolean {
  return (res as { _last?: boolean })._last === true
}

/**
 * The connection's request in flight ended: the next waiting one goes. Not
 * at once: undici frees the upstream connection only after the response's
 * callbacks return and then one event-loop turn; dispatching before that
 * would open a second upstream connection for one client connection.
 */
function nextTurn(ctx: ForwardContext, socket: ClientSocket): void {
  queueMicrotask(() => setImmediate(takeTurn, ctx, socket))
}

function takeTurn(ctx: ForwardContext, socket: ClientSocket): void {
  const waiting = socket[kWaiting]
  while (waiting !== undefined && !socket[kBusy] && waiting.length > 0) {
    const req = waiting.shift() as IncomingMessage
    const res = waiting.shift() as ServerResponse
    if (waiting.length === 0) {
      socket[kWaiting] = undefined
      resumeReading(socket)
    }
    // The client left, or ended its side (Node then aborts the requests it read): nothing to answer.
    if (!socket.writable || req.destroyed || res.destroyed) continue
    route(ctx, req, res, socket)
  }
}

/**
 * The client's bytes stopped parsing (bad chunk framing, a malformed
 * pipelined request) on a connection with an answer in progress. The
 * requests read behind it are never forwarded. If the broken bytes were the
 * body of the request in flight, it gets 400 when no response has started
 * (otherwise its connection is closed) and its upstream request is
 * cancelled; if a complete request is in flight, it is answered first, then
 * the connection closes, as nginx does (destroying the connection at once
 * would leave that request forwarded and its answer lost). False when no
 * answer is in progress: the caller answers 400 and closes.
 */
export function framingBroke(socket: Socket): boolean {
  const s = socket as ClientSocket
  s[kWaiting] = undefined
  const last = s[kLast]
  if (last === undefined || last.writableFinished) return false
  const ex = (last as TaggedResponse)[kExchange]
  if (ex !== undefined && !ex.req.complete) {
    ex.clientFailed(new BadRequestError('malformed request body'))
    return true
  }
  if (!s[kClosing]) {
    s[kClosing] = true
    last.once('finish', () => endConnection(socket))
  }
  return true
}

/**
 * Runs `go` once the answer to every request read before it on this
 * connection is written, or never if the connection closes first. node:http
 * hands over an upgrade or a CONNECT as soon as it parses one, even pipelined
 * behind requests still in flight or waiting their turn, and whatever the
 * proxy writes for it must follow their answers on the wire. Answers are
 * written in order, so the last one read is the one to wait for.
 */
export function afterAnswers(socket: Duplex, go: () => void): void {
  relayDrains(socket)
  const s = socket as ClientSocket
  const waiting = s[kWaiting]
  const last = (waiting === undefined ? s[kLast] : waiting[waiting.length - 1]) as ServerResponse | undefined
  if (last === undefined || last.writableFinished || last.destroyed) {
    go()
    return
  }
  // 'close' follows 'finish', once Node has detached the response from the socket.
  last.once('close', () => {
    if (s.writable) go()
    else s.destroy()
  })
}

/**
 * Whether a response waits on its exchange with the upstream: routed and not
 * yet over. A pipelined request waiting its turn, or one never forwarded
 * because the connection broke before its turn, does not.
 */
export function awaitsUpstream(res: ServerResponse): boolean {
  const ex = (res as TaggedResponse)[kExchange]
  return ex !== undefined && !ex.over
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
export class Exchange implements Dispatcher.DispatchHandler, Watched {
  /** Its place in the deadline sweep's set. */
  [kSlot]?: number
  instance!: Instance
  status = 0
  /** Set by mirroring for the requests it copies. */
  tap: ResponseTap | undefined = undefined
  readonly started = performance.now()
  /** Response body bytes written to the client, for the access log. */
  bytes = 0
  /** A gRPC call (README "gRPC"): its status is read from the answer, its deadline from grpc-timeout. */
  readonly grpc: boolean
  /** Whether a request body follows the head (framing headers, or an HTTP/2 HEADERS frame without END_STREAM). */
  readonly hasBody: boolean
  /** A gRPC call's grpc-status as the client got it (GRPC_NONE: not gRPC, or none seen yet). */
  grpcStatus = GRPC_NONE
  #tries = 0
  #controller: Dispatcher.DispatchController | undefined
  #headers: string[] | undefined
  #responded = false
  #finished = false
  #clientGone = false
  #drainHooked = false
  /**
   * The response head must have come by then, across every try: until a try
   * is first written to an upstream connection (connecting, or queued in a
   * full pool), connectMs plus upstreamMs from the start; from then on,
   * upstreamMs from that first write. undici's per-try timer is coarse (its
   * fast timers tick every ~0.5 s) and restarts with each try; this one is
   * the request's.
   */
  #headDeadline: number
  #written = false
  /** The request body must have come by then (0: no body, or it is complete). */
  #bodyDeadline: number
  /** A gRPC call's grpc-timeout, as a time: the whole exchange must end by then (0: none). */
  #callDeadline = 0

  constructor(
    readonly ctx: ForwardContext,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly table: RoutingTable,
    readonly route: VersionRoute,
    readonly key: number,
    readonly socket: ClientConnection,
    readonly requestId: string,
    /** HTTP/2 only: whether a body follows the head (undefined: HTTP/1.1, its framing headers say). */
    readonly h2Body?: boolean,
  ) {
    this.#headDeadline = this.started + ctx.connectMs + ctx.headersTimeout
    this.hasBody = h2Body === undefined ? hasBody(req.headers) : h2Body
    this.#bodyDeadline = this.hasBody ? this.started + ctx.requestBodyMs : 0
    // Only a version reached over HTTP/2 ever gets a gRPC call (route() answers the others).
    this.grpc = route.version.http2 && isGrpc(req.headers['content-type'])
    if (this.grpc) this.#grpcDeadlines()
  }

  /**
   * A gRPC call with `grpc-timeout` has one deadline for everything, its
   * own: the head, the request stream and the response stream (cut with
   * DEADLINE_EXCEEDED when it passes). Without one, the head waits
   * timeouts.upstreamMs as for any request, and the request stream is not
   * held to timeouts.requestBodyMs: a client stream may last as long as
   * the call does.
   */
  #grpcDeadlines(): void {
    const ms = grpcTimeoutMs(this.req.headers['grpc-timeout'])
    // Never passes, but still says a body follows.
    if (this.#bodyDeadline !== 0) this.#bodyDeadline = Number.POSITIVE_INFINITY
    if (ms < 0) return
    this.#callDeadline = this.started + ms
    this.#headDeadline = this.#callDeadline
  }

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
    this.#headers ??=
      this.h2Body === undefined
        ? upstreamHeaders(req, this.ctx.proto, this.ctx.requestIdHeader, this.requestId)
        : upstreamHeadersH2(req, this.socket.remoteAddress ?? '', this.ctx.proto, this.ctx.requestIdHeader, this.requestId)
    const pool = instance.pool
    if (pool === undefined) {
      this.onResponseError(undefined, new UpstreamFailedError('instance has no connection pool'))
      return
    }
    // A retry waits only for what is left of the request's own head deadline.
    const headersTimeout =
      this.#tries === 1 && this.#callDeadline === 0
        ? this.ctx.headersTimeout
        : Math.max(1, Math.ceil(this.#headDeadline - performance.now()))
    pool.dispatch(
      {
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        headers: this.#headers,
        body: this.#bodyDeadline !== 0 ? req : null,
        headersTimeout,
        bodyTimeout: this.ctx.bodyTimeout,
      },
      this,
    )
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (!this.#written) {
      this.#written = true
      const deadline = performance.now() + this.ctx.headersTimeout
      if (deadline < this.#headDeadline && this.#callDeadline === 0) this.#headDeadline = deadline
    }
    if (this.#clientGone || this.#finished) controller.abort(new Error('exchange over'))
    else if (this.#tries === 1 && this.ctx.onSent !== undefined) this.ctx.onSent(this.req, this.key, this)
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return // 1xx informational: Node answers 100-continue itself
    if (this.#finished) return
    this.#responded = true
    this.status = statusCode
    // A trailers-only answer carries its status in the head.
    if (this.grpc) this.grpcStatus = grpcStatusOf(headers)
    if (this.#clientGone) return
    const list = responseHeaderList(headers, statusCode === 204)
    if (this.tap !== undefined) this.tap.start(statusCode, list)
    echoRequestId(list, headers, this.ctx.requestIdHeader, this.requestId)
    const res = this.res
    if (this.ctx.stopping && closesNow(this.ctx, this.socket)) res.shouldKeepAlive = false
    if (this.grpc && this.grpcStatus !== GRPC_NONE) {
      // A head with grpc-status is a whole trailers-only answer: passed on as one.
      endWithHead(res, statusCode, headerObject(list))
      this.#finish(statusCode, false)
      return
    }
    // Node's types say string[] for the flat form; it takes array values (set-cookie) there too.
    const flat = list as string[]
    if (this.h2Body !== undefined) {
      // HTTP/2 has no reason phrase, and refuses a connection-specific header an upstream may still send.
      try {
        res.writeHead(statusCode, flat)
      } catch (err) {
        this.#responded = false
        this.#fail(new UpstreamFailedError(err as Error, 'the upstream response head cannot be sent over HTTP/2'))
        controller.abort(err as Error)
        return
      }
    } else if (statusMessage) res.writeHead(statusCode, statusMessage, flat)
    else res.writeHead(statusCode, flat)
    if (statusCode === 204 || statusCode === 304 || this.req.method === 'HEAD') {
      // No body, whatever Content-Length says (RFC 9110 6.4.1): the exchange is
      // complete with its head. undici may still count the announced length
      // as missing and close its upstream connection; that is not a failure
      // of this request, which is over.
      res.end()
      this.#finish(statusCode, false)
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#clientGone || this.#finished) return
    if (this.tap !== undefined) this.tap.data(chunk)
    this.bytes += chunk.length
    if (!this.res.write(chunk)) {
      controller.pause()
      if (!this.#drainHooked) {
        this.#drainHooked = true
        this.res.on('drain', onResponseDrain)
      }
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.#finished) return
    if (this.grpc && this.grpcStatus === GRPC_NONE) this.grpcStatus = grpcStatusOf(trailers)
    if (!this.#clientGone) {
      // Trailers (chunked responses) pass as they came, without the client asking with `TE: trailers`.
      for (const _ in trailers) {
        this.res.addTrailers(trailers as Record<string, string>)
        break
      }
      this.res.end()
    }
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
      this.bytes = sendOwnAnswer(this.res, new BadRequestError(err.message), true, this.ctx.requestIdHeader, this.requestId)
      this.#finish(400, false)
      return
    }
    if (this.#retryable(err)) {
      const next = this.table.chooseRetry(this.route, this.key, instance, CONNECT_PHASE.has(errorCode(err)))
      if (next !== undefined) {
        this.#release()
        this.ctx.sink.tryFailed(instance, err)
        this.#controller = undefined
        this.send(next)
        return
      }
    }
    this.#fail(upstreamAnswer(err))
  }

  #fail(answer: SluiceError): void {
    this.ctx.logFailure(answer, this.instance, this.requestId)
    this.status = answer.status
    if (this.grpc) this.grpcStatus = grpcStatusForAnswer(answer.status)
    this.bytes = sendOwnAnswer(this.res, answer, this.ctx.stopping, this.ctx.requestIdHeader, this.requestId)
    this.#finish(answer.status, true)
  }

  /**
   * The deadline sweep: no response head by the request's head deadline
   * (504, the upstream request cancelled), or a request body still coming
   * after timeouts.requestBodyMs (408). Unwatched once neither can pass.
   */
  check(now: number): void {
    if (this.#finished) {
      // The rest of a body being dropped after its answer: the connection goes if it has not come by the deadline.
      if (this.#bodyDeadline !== 0 && !this.req.complete) {
        if (now < this.#bodyDeadline) return
        ;(this.socket as ClientSocket).destroy()
      }
      this.ctx.deadlines.unwatch(this)
      return
    }
    if (this.#bodyDeadline !== 0) {
      if (this.req.complete) this.#bodyDeadline = 0
      else if (now >= this.#bodyDeadline) {
        this.clientFailed(new RequestTimeoutError())
        return
      }
    }
    if (!this.#responded && now >= this.#headDeadline) {
      const controller = this.#controller
      this.#fail(new UpstreamTimeoutError(new Error('no response head by the request deadline')))
      controller?.abort(new Error('exchange over'))
      return
    }
    if (this.#callDeadline !== 0) {
      if (now >= this.#callDeadline) this.#deadlineExceeded()
      return
    }
    if (this.#responded && this.#bodyDeadline === 0) this.ctx.deadlines.unwatch(this)
  }

  /** A gRPC call's deadline passed after its answer began: the stream ends with DEADLINE_EXCEEDED, the upstream call is cancelled. */
  #deadlineExceeded(): void {
    const controller = this.#controller
    this.grpcStatus = GRPC_DEADLINE_EXCEEDED
    if (!this.#clientGone) {
      this.res.addTrailers({ 'grpc-status': String(GRPC_DEADLINE_EXCEEDED), 'grpc-message': 'Deadline exceeded' })
      this.res.end()
    }
    this.#finish(this.status, false)
    controller?.abort(new Error('grpc deadline exceeded'))
  }

  /**
   * The client is at fault (request body too slow, or its framing broken):
   * answered with `err` when no response has started, otherwise cut; the
   * upstream request is cancelled. A client failure: never an upstream error.
   */
  clientFailed(err: SluiceError): void {
    if (this.#finished) return
    const controller = this.#controller
    let status = this.status
    if (!this.#responded && !this.#clientGone) {
      status = this.status = err.status
      this.bytes = sendOwnAnswer(this.res, err, true, this.ctx.requestIdHeader, this.requestId)
    } else if (!this.#clientGone) this.res.destroy()
    this.#finish(status, false)
    controller?.abort(err)
  }

  /** The client's connection closed before the response ended: stop the upstream work. */
  clientClosed(): void {
    // An HTTP/2 stream reset by its client counts as finished writing: only the exchange's own end says it was answered.
    if (this.#finished || (this.h2Body === undefined && this.res.writableFinished)) return
    this.#clientGone = true
    this.#controller?.abort(new Error('client closed'))
  }

  resume(): void {
    this.#controller?.resume()
  }

  /** Finished: answered, failed or cut; nothing more is written for it. */
  get over(): boolean {
    return this.#finished
  }

  /**
   * README "Proxying rules": tried again only when it cannot have reached the
   * application: refused or otherwise failed before connecting, or an
   * idempotent method with no response byte back. A request body already
   * read can never be replayed.
   */
  #retryable(err: Error): boolean {
    if (this.#tries > this.ctx.retries) return false
    // The request's own head deadline counts every try: a try that used it up leaves none for a retry.
    if (performance.now() >= this.#headDeadline) return false
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
    const socket = this.socket
    // A response that closes the connection ends its turns for good.
    socket[kBusy] = lastOnConnection(this.res)
    // Answered before its body ended (an upstream's early 413 or 401, or an own answer after an upstream failed
    // mid-body): undici stops reading the body, and node:http leaves a body read by someone to them, so the
    // connection would stall inside it, its next request never read. The rest is dropped as it comes, as node:http
    // drops a body nobody reads, until the body's deadline (check()).
    if (!socket[kBusy] && this.h2Body === undefined && this.#bodyDeadline !== 0 && !this.req.complete && !this.#clientGone)
      dropBody(this.req, socket as ClientSocket)
    else this.ctx.deadlines.unwatch(this)
    // Only an HTTP/1.1 socket ever has requests waiting.
    if (!socket[kBusy] && socket[kWaiting] !== undefined) nextTurn(this.ctx, socket as ClientSocket)
    this.#release()
    const ms = performance.now() - this.started
    if (this.grpc && this.grpcStatus === GRPC_NONE) this.grpcStatus = this.#clientGone ? GRPC_CANCELLED : GRPC_UNKNOWN
    this.ctx.sink.end(this.instance, status, ms, failed, this.grpcStatus)
    this.ctx.accessLog?.(this.req, this.socket, status, ms, this.instance, this.requestId, this.bytes)
    if (this.tap !== undefined) this.tap.finish(status, failed || this.#clientGone, ms)
  }
}

/**
 * What node:http does with a request body nobody reads: read on, and drop it
 * (parsing goes on to the next request). The connection may already be
 * paused for that body (its reader stopped taking it, then went): it reads
 * again as node:http's own readStart would have it, unless node:http paused
 * it for a write backlog, which it resumes itself.
 */
function dropBody(req: IncomingMessage, socket: ClientSocket): void {
  ;(req as IncomingMessage & { _dump(): void })._dump()
  if ((socket as { _paused?: boolean })._paused !== true && socket.readable) socket.resume()
}

/** The answer to an upstream failure: its kind by code, never its text. */
function upstreamAnswer(err: Error): SluiceError {
  if (err instanceof UpstreamFailedError) return err
  const code = errorCode(err)
  if (TIMEOUTS.has(code)) return new UpstreamTimeoutError(err)
  if (TLS_REFUSED.has(code)) return new UpstreamTlsError(err)
  if (CONNECT_PHASE.has(code)) return new UpstreamFailedError(err, 'could not connect to the upstream')
  if (code === 'UND_ERR_HEADERS_OVERFLOW') return new UpstreamFailedError(err, 'the upstream response head is too large')
  return new UpstreamFailedError(err)
}

/** A log line's fields for an upstream failure: the detail the client does not get. */
export function failureDetail(err: SluiceError): string {
  return describeCause((err as { cause?: unknown }).cause ?? err)
}

function hasBody(h: IncomingHttpHeaders): boolean {
  const cl = h['content-length']
  return (cl !== undefined && cl !== '0') || h['transfer-encoding'] !== undefined
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : ''
}

/**
 * Whether a response during a stop closes its connection now. A retiring
 * worker (a rolling restart) lets its kept-alive clients go one by one over
 * `stopSpread.ms`, each at a moment fixed by its port, so the fresh worker
 * warms up on a growing share of them rather than taking all at once.
 */
export function closesNow(ctx: ForwardContext, socket: { readonly remotePort?: number | undefined }): boolean {
  const spread = ctx.stopSpread
  if (spread === undefined) return true
  const share = (Math.imul(socket.remotePort ?? 0, 0x9e3779b1) >>> 0) / 0x1_0000_0000
  return performance.now() - spread.since >= share * spread.ms
}
