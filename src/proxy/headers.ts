import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'

/**
 * Header rules (README "Proxying rules"): hop-by-hop headers and those named in
 * Connection are removed (never Host, Content-Length or Transfer-Encoding,
 * which frame the message or name its origin), X-Forwarded-For is appended to, X-Forwarded-Proto
 * and X-Forwarded-Host are set, Host passes through. `Expect` is answered by
 * the proxy itself (undici does not forward it).
 *
 * Names are compared lower-cased only when their length matches one of the
 * dropped names, so the common headers cost one integer compare each.
 */
const DROPPED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
])
const DROPPED_LENGTHS = new Uint8Array(32)
for (const name of DROPPED) DROPPED_LENGTHS[name.length] = 1

/**
 * End-to-end headers a Connection token cannot remove: naming Host would hand
 * the upstream the proxy's own idea of the host (its internal address, which
 * then leaks into redirects), naming Content-Length would re-frame the body
 * as chunked. Transfer-Encoding is the proxy's to rewrite, never the client's
 * to drop.
 */
const NEVER_HOP = new Set(['host', 'content-length', 'transfer-encoding'])

/** A header the proxy sets, removes or frames the message with: never one a setting may claim (requestId.header). */
export function proxyOwnedHeader(lowerCaseName: string): boolean {
  return DROPPED.has(lowerCaseName) || NEVER_HOP.has(lowerCaseName)
}

/** Tokens of a Connection header that name extra hop-by-hop headers (beyond keep-alive/close/upgrade). */
function connectionNamed(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined
  // The common values name nothing extra: skip the split.
  const len = value.length
  if (len === 10 || len === 5) {
    const v = value.toLowerCase()
    if (v === 'keep-alive' || v === 'close') return undefined
  }
  let out: Set<string> | undefined
  for (const raw of value.split(',')) {
    const t = raw.trim().toLowerCase()
    if (t === '' || t === 'keep-alive' || t === 'close' || t === 'upgrade' || NEVER_HOP.has(t)) continue
    if (out === undefined) out = new Set()
    out.add(t)
  }
  return out
}

/**
 * The flat [name, value, ...] list sent upstream. With a request ID (README
 * "Request IDs"; `idName` lower-case, `id` already chosen), the client's own
 * copies of that header are left out and the chosen one is added once; the
 * name's length is compared first, so other headers pay one integer compare.
 */
export function upstreamHeaders(req: IncomingMessage, proto: string, idName = '', id = ''): string[] {
  return headerListFrom(req.rawHeaders, req.headers.connection, req.socket.remoteAddress ?? '', proto, idName, id)
}

/**
 * The same list for an HTTP/2 request: pseudo-headers are never forwarded,
 * `:authority` becomes Host (first, unless the client also sent a Host),
 * and the cookie fields HTTP/2 allows to be split are joined into one with
 * "; " as an HTTP/1.1 upstream expects (RFC 9113 8.3.1, 8.2.3).
 */
export function upstreamHeadersH2(req: IncomingMessage, client: string, proto: string, idName = '', id = ''): string[] {
  const raw = req.rawHeaders
  const plain: string[] = []
  let authority: string | undefined
  let hasHost = false
  let cookie: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = raw[i + 1]!
      continue
    }
    if (name === 'cookie') {
      cookie = cookie === undefined ? raw[i + 1]! : `${cookie}; ${raw[i + 1]!}`
      continue
    }
    if (name === 'host') hasHost = true
    plain.push(name, raw[i + 1]!)
  }
  if (cookie !== undefined) plain.push('cookie', cookie)
  if (authority !== undefined && !hasHost) plain.unshift('host', authority)
  return headerListFrom(plain, undefined, client, proto, idName, id)
}

/**
 * The size of an HTTP/2 request head as limits.maxHeaderBytes counts it: the
 * names and values, as in the HTTP/1.1 head Node's parser measures.
 */
export function headBytesH2(raw: readonly string[]): number {
  let n = 0
  for (let i = 0; i < raw.length; i++) n += raw[i]!.length
  return n
}

function headerListFrom(
  raw: readonly string[],
  connection: string | undefined,
  client: string,
  proto: string,
  idName: string,
  id: string,
): string[] {
  const out: string[] = []
  const extra = connectionNamed(connection)
  const idLen = idName === '' ? -1 : idName.length
  let xff: string | undefined
  let host: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const len = name.length
    if (len === idLen && name.toLowerCase() === idName) continue
    if ((len < 32 && DROPPED_LENGTHS[len] === 1) || extra !== undefined) {
      const lower = name.toLowerCase()
      if (lower === 'x-forwarded-for') {
        xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`
        continue
      }
      if (DROPPED.has(lower) || extra?.has(lower)) continue
    }
    if (len === 4 && host === undefined && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) {
      host = raw[i + 1]!
    }
    out.push(name, raw[i + 1]!)
  }
  out.push('x-forwarded-for', xff === undefined ? client : `${xff}, ${client}`)
  out.push('x-forwarded-proto', proto)
  if (host !== undefined) out.push('x-forwarded-host', host)
  if (idLen > 0) out.push(idName, id)
  return out
}

const RESPONSE_DROPPED = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]

const RESPONSE_DROPPED_SET = new Set(RESPONSE_DROPPED)

/**
 * The flat [name, value, ...] list handed to writeHead, hop-by-hop headers
 * left out. Building it costs less than deleting keys from undici's header
 * object, which would turn it into a slow dictionary for Node to iterate.
 * `noLength`: a 204, which must not carry Content-Length (RFC 9110 8.6); a
 * 304 keeps it (it describes the cached representation).
 */
export function responseHeaderList(headers: IncomingHttpHeaders, noLength = false): (string | string[])[] {
  const conn = headers.connection
  const extra = conn === undefined ? undefined : connectionNamed(Array.isArray(conn) ? conn.join(',') : conn)
  const out: (string | string[])[] = []
  for (const name in headers) {
    if (RESPONSE_DROPPED_SET.has(name) || extra?.has(name)) continue
    if (noLength && name === 'content-length') continue
    const v = headers[name]
    if (v !== undefined) out.push(name, v)
  }
  return out
}

/**
 * Adds the request ID to a response's flat header list (from
 * responseHeaderList). An upstream's own copy is replaced, so the client
 * always sees the ID the proxy logged and sent upstream.
 */
export function echoRequestId(
  list: (string | string[])[],
  headers: IncomingHttpHeaders,
  idName: string,
  id: string,
): void {
  if (headers[idName] !== undefined) {
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === idName) {
        list.splice(i, 2)
        break
      }
    }
  }
  list.push(idName, id)
}

/** Removes hop-by-hop headers from an upstream response's parsed headers, in place. */
export function stripResponseHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const conn = headers.connection
  if (conn !== undefined) {
    const extra = connectionNamed(Array.isArray(conn) ? conn.join(',') : conn)
    if (extra !== undefined) for (const name of extra) delete headers[name]
  }
  for (let i = 0; i < RESPONSE_DROPPED.length; i++) {
    const name = RESPONSE_DROPPED[i]!
    if (headers[name] !== undefined) delete headers[name]
  }
  return headers
}
