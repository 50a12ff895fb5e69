import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { ServerHttp2Stream } from 'node:http2'

/**
 * gRPC over the data path (README "gRPC"). A request is gRPC when its
 * content-type is `application/grpc` or `application/grpc+proto` and the
 * like; checked by length and one character before the string compare, so
 * other requests pay two integer compares.
 */
export function isGrpc(contentType: string | undefined): boolean {
  return (
    contentType !== undefined &&
    contentType.length >= 16 &&
    contentType.charCodeAt(12) === 103 /* g */ &&
    contentType.startsWith('application/grpc')
  )
}

/** No grpc-status seen (yet): never a value of the label. */
export const GRPC_NONE = -1
export const GRPC_CANCELLED = 1
export const GRPC_UNKNOWN = 2
export const GRPC_DEADLINE_EXCEEDED = 4
export const GRPC_UNAVAILABLE = 14

/** The grpc-status in a head or trailers, GRPC_NONE when absent or not a status code. */
export function grpcStatusOf(headers: IncomingHttpHeaders): number {
  const v = headers['grpc-status']
  if (typeof v !== 'string' || v.length === 0 || v.length > 2) return GRPC_NONE
  const a = v.charCodeAt(0) - 48
  if (a < 0 || a > 9) return GRPC_NONE
  if (v.length === 1) return a
  const b = v.charCodeAt(1) - 48
  const n = a * 10 + b
  return a === 1 && b >= 0 && b <= 6 ? n : GRPC_NONE
}

/** The gRPC status a proxy's own answer of this HTTP status carries: a timeout is DEADLINE_EXCEEDED, the rest UNAVAILABLE. */
export function grpcStatusForAnswer(httpStatus: number): number {
  return httpStatus === 504 || httpStatus === 408 ? GRPC_DEADLINE_EXCEEDED : GRPC_UNAVAILABLE
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 }

/**
 * `grpc-timeout` in milliseconds (up to 8 digits and a unit, as the gRPC
 * HTTP/2 protocol defines it), or -1 when absent or malformed (then the
 * proxy's own timeouts apply).
 */
export function grpcTimeoutMs(value: string | string[] | undefined): number {
  if (typeof value !== 'string' || value.length < 2 || value.length > 9) return -1
  const unit = TIMEOUT_UNITS[value[value.length - 1]!]
  const digits = value.slice(0, -1)
  if (unit === undefined || !/^\d+$/.test(digits)) return -1
  return Number(digits) * unit
}

/** grpc-message is percent-encoded: everything outside printable ASCII, and '%' itself. */
export function grpcMessage(text: string): string {
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/**
 * A trailers-only answer: over HTTP/2 one HEADERS frame with END_STREAM, as
 * gRPC clients require (node:http2's compatibility response would follow
 * the head with an empty DATA frame, and a client then reads the status as
 * plain metadata and the call as ended without one); over HTTP/1.1 the head
 * and an empty body.
 */
export function endWithHead(res: ServerResponse, status: number, headers: OutgoingHttpHeaders): void {
  const stream = (res as { stream?: ServerHttp2Stream }).stream
  if (stream === undefined) {
    res.writeHead(status, headers)
    res.end()
    return
  }
  if (stream.destroyed || stream.closed || stream.headersSent) return
  stream.respond({ ...headers, ':status': status }, { endStream: true })
}

/** A flat [name, value, ...] header list as the object endWithHead takes. */
export function headerObject(list: readonly (string | string[])[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (let i = 0; i < list.length; i += 2) out[list[i] as string] = list[i + 1]
  return out
}
