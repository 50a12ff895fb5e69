/**
 * The error catalogue. Every error sluice raises or answers with carries a
 * stable `code` (scripts and dashboards match on it, never on the message)
 * and the HTTP status it maps to. The mapping to a response body lives in
 * one place: `errorBody`.
 */
export abstract class SluiceError extends Error {
  abstract readonly code: string
  abstract readonly status: number
  /** Key path of the offending field, when one field is at fault. */
  path?: string
}

export class NoUsableInstanceError extends SluiceError {
  readonly code = 'SLUICE_NO_USABLE_INSTANCE'
  readonly status = 503
  constructor() {
    super('no usable instance in any version')
  }
}

/**
 * The upstream failed before a response could be relayed. The message is
 * short and the same for every client: an upstream address, port or library
 * error text never reaches the public side (README "Proxying rules", own answers); `cause`
 * keeps the detail for the log.
 */
export class UpstreamFailedError extends SluiceError {
  readonly code = 'SLUICE_UPSTREAM_FAILED'
  readonly status = 502
  constructor(
    override readonly cause: unknown,
    message = 'the upstream failed to answer',
  ) {
    super(message)
  }
}

/** No response head within the request's deadline (README "Proxying rules", own answers); `cause` is for the log. */
export class UpstreamTimeoutError extends SluiceError {
  readonly code = 'SLUICE_UPSTREAM_TIMEOUT'
  readonly status = 504
  constructor(override readonly cause: unknown) {
    super('the upstream did not answer in time')
  }
}

/** The upstream's TLS certificate was refused (README "Upstream TLS and HTTP/2"); `cause` names why, for the log. */
export class UpstreamTlsError extends SluiceError {
  readonly code = 'SLUICE_UPSTREAM_TLS'
  readonly status = 502
  constructor(override readonly cause: unknown) {
    super("the upstream's TLS certificate was not accepted")
  }
}

/** A gRPC request routed to a version reached over HTTP/1.1, which cannot carry it (README "gRPC"). */
export class NoHttp2PathError extends SluiceError {
  readonly code = 'SLUICE_NO_HTTP2_UPSTREAM'
  readonly status = 502
  constructor(version: string) {
    super(`gRPC needs HTTP/2 to the upstream; version "${version}" is reached over HTTP/1.1`)
  }
}

export class ShuttingDownError extends SluiceError {
  readonly code = 'SLUICE_SHUTTING_DOWN'
  readonly status = 503
  constructor() {
    super('the proxy is stopping')
  }
}

/** A request the proxy cannot forward as sent (asterisk-form target, no Host, ...): the client's fault, never an instance's. */
export class BadRequestError extends SluiceError {
  readonly code = 'SLUICE_BAD_REQUEST'
  readonly status = 400
}

/** The client took longer than `timeouts.requestBodyMs` to send its request body. */
/** A request head over limits.maxHeaderBytes (HTTP/1.1 heads are measured by Node's parser, HTTP/2 ones by sluice). */
export class HeadTooLargeError extends SluiceError {
  readonly code = 'SLUICE_BAD_REQUEST'
  readonly status = 431
  constructor() {
    super('the request head is larger than limits.maxHeaderBytes')
  }
}

export class RequestTimeoutError extends SluiceError {
  readonly code = 'SLUICE_REQUEST_TIMEOUT'
  readonly status = 408
  constructor(message = 'the request body did not arrive in time') {
    super(message)
  }
}

/** A method the proxy never forwards (CONNECT: sluice is a reverse proxy, not a tunnel). */
export class MethodNotAllowedError extends SluiceError {
  readonly code = 'SLUICE_METHOD_NOT_ALLOWED'
  readonly status = 405
  constructor(message = 'CONNECT is not supported by a reverse proxy') {
    super(message)
  }
}

/** An Expect other than 100-continue, the only expectation HTTP/1.1 defines (RFC 9110 section 10.1.1). */
export class ExpectationFailedError extends SluiceError {
  readonly code = 'SLUICE_EXPECTATION_FAILED'
  readonly status = 417
  constructor() {
    super('the only expectation met is 100-continue')
  }
}

/** An upgrade request that is not a WebSocket opening handshake sluice can proxy. */
export class WebSocketHandshakeError extends SluiceError {
  readonly code = 'SLUICE_BAD_WEBSOCKET_HANDSHAKE'
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** A mirrored copy had no complete answer within `mirror.timeoutMs` (counted, never answered to anyone). */
export class ShadowTimeoutError extends Error {
  readonly code = 'SLUICE_MIRROR_TIMEOUT'
}

export interface Problem {
  path: string
  message: string
}

/** Every problem of a configuration, found at once. */
export class ConfigError extends SluiceError {
  readonly code = 'SLUICE_CONFIG_INVALID'
  readonly status = 400
  constructor(readonly problems: readonly Problem[]) {
    super(problems.map(formatProblem).join('\n'))
    if (problems.length === 1) this.path = problems[0]?.path
  }
}

export function formatProblem(p: Problem): string {
  return p.path ? `${p.path}: ${p.message}` : p.message
}

/** An admin API error: invalid input, unknown target, conflict, auth. */
export class AdminError extends SluiceError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    path?: string,
  ) {
    super(message)
    if (path !== undefined) this.path = path
  }
}

export interface ErrorBody {
  /** `requestId`: on the proxy's own answers to proxied requests (README "Request IDs"). */
  error: { code: string; message: string; path?: string; problems?: readonly Problem[]; requestId?: string }
}

export function errorBody(err: SluiceError): ErrorBody {
  const body: ErrorBody = { error: { code: err.code, message: err.message } }
  if (err.path !== undefined) body.error.path = err.path
  if (err instanceof ConfigError) body.error.problems = err.problems
  return body
}

/** The detail of an error's cause, for the log only (library codes and addresses). */
export function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    return typeof code === 'string' ? `${code} ${cause.message}` : cause.message
  }
  return String(cause)
}

/** A rollout command with nothing to act on: a start while one is active, a pause when none progresses, ... */
export class RolloutConflictError extends SluiceError {
  readonly code = 'SLUICE_ROLLOUT_CONFLICT'
  readonly status = 409
}

/** A rollout that cannot start as asked: unknown or equal versions, steps that do not rise to 100. */
export class RolloutInvalidError extends SluiceError {
  readonly code = 'SLUICE_ROLLOUT_INVALID'
  readonly status = 400
  constructor(message: string, path?: string) {
    super(message)
    if (path !== undefined) this.path = path
  }
}

/**
 * The state file cannot be read, is invalid, or a change could not be
 * written to it. At start it stops the start (never a silent reset); on a
 * change the change is refused and the state stays as it was.
 */
export class StateFileError extends SluiceError {
  readonly code = 'SLUICE_STATE_FILE'
  readonly status = 503
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`state file ${file}: ${problem}`)
  }
}

/**
 * A certificate or key of the TLS listener cannot be read or does not make a
 * usable pair (bad PEM, key not matching the certificate). At start it stops
 * the start; on a reload or a change on disk it is logged and the pair in use
 * stays.
 */
export class TlsCertificateError extends SluiceError {
  readonly code = 'SLUICE_TLS_CERTIFICATE'
  readonly status = 500
  constructor(
    readonly cert: string,
    readonly key: string,
    problem: string,
  ) {
    super(`certificate ${cert} with key ${key}: ${problem}`)
  }
}
