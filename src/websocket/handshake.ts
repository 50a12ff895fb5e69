import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { type SluiceError, WebSocketHandshakeError } from '../errors.js'
import { writeOwnAnswer } from '../proxy/client-socket.js'
import { stripResponseHeaders, upstreamHeaders } from '../proxy/headers.js'

const KEY = /^[+/0-9A-Za-z]{22}==$/

/**
 * Checked before any upstream is contacted, so a malformed handshake costs
 * the application nothing (the same checks ws's server makes).
 */
export function handshakeProblem(req: IncomingMessage): WebSocketHandshakeError | undefined {
  const h = req.headers
  if (h.upgrade?.toLowerCase() !== 'websocket')
    return new WebSocketHandshakeError(400, `cannot proxy an upgrade to "${h.upgrade ?? ''}": only websocket`)
  if (req.method !== 'GET') return new WebSocketHandshakeError(405, 'a WebSocket handshake must be a GET')
  const key = h['sec-websocket-key']
  if (key === undefined || !KEY.test(key))
    return new WebSocketHandshakeError(400, 'missing or invalid Sec-WebSocket-Key')
  const version = h['sec-websocket-version']
  if (version !== '13' && version !== '8')
    return new WebSocketHandshakeError(426, 'unsupported Sec-WebSocket-Version (13 is supported)')
  return undefined
}

/** The subprotocols the client offered, in its order of preference. */
export function offeredProtocols(req: IncomingMessage): string[] {
  const raw = req.headers['sec-websocket-protocol']
  if (raw === undefined) return []
  const out: string[] = []
  for (const p of raw.split(',')) {
    const t = p.trim()
    if (t !== '') out.push(t)
  }
  return out
}

/** Negotiated per side: the proxy's own WebSocket client sets these toward the upstream. */
const PER_SIDE = new Set([
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
  'sec-websocket-accept',
])

/**
 * The handshake headers for a relayed upstream connection: the header rules
 * of the HTTP data path (hop-by-hop removed, X-Forwarded-* set, Host kept),
 * minus the Sec-WebSocket-* fields each side negotiates for itself. An object
 * because that is what ws accepts; repeated fields are joined.
 */
export function relayHeaders(req: IncomingMessage, proto: string, idName = '', id = ''): Record<string, string> {
  const flat = upstreamHeaders(req, proto, idName, id)
  const out: Record<string, string> = {}
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase()
    if (PER_SIDE.has(name)) continue
    const prev = out[name]
    const value = flat[i + 1]!
    out[name] = prev === undefined ? value : `${prev}${name === 'cookie' ? '; ' : ', '}${value}`
  }
  return out
}

/**
 * relayHeaders again for a handoff's new upstream, from what a session keeps
 * (the request's parsed headers, not the request): the same rules on the
 * same fields. Keeping the headers object itself instead would cost every
 * idle connection a second copy of its headers.
 */
export function relayHeadersFrom(
  request: IncomingHttpHeaders,
  remoteAddress: string | undefined,
  proto: string,
  idName: string,
  id: string,
): Record<string, string> {
  const rawHeaders: string[] = []
  for (const name in request) {
    const v = request[name]
    if (Array.isArray(v)) for (const one of v) rawHeaders.push(name, one)
    else if (v !== undefined) rawHeaders.push(name, v)
  }
  const req = { rawHeaders, headers: request, socket: { remoteAddress } } as unknown as IncomingMessage
  return relayHeaders(req, proto, idName, id)
}

/**
 * The request headers for tunnel mode, flat as node:http takes them: the
 * same header rules, with the upgrade itself and every Sec-WebSocket-* field
 * kept, because the two ends negotiate with each other through the tunnel.
 */
export function tunnelHeaders(req: IncomingMessage, proto: string, idName = '', id = ''): string[] {
  const flat = upstreamHeaders(req, proto, idName, id)
  flat.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? 'websocket')
  return flat
}

/** A handshake sluice refuses itself: a 426 names the version it speaks (RFC 6455 section 4.4). */
export function refuseHandshake(socket: Duplex, err: SluiceError): void {
  writeOwnAnswer(socket, err, err.status === 426 ? 'Sec-WebSocket-Version: 13\r\n' : '')
}

/**
 * An upstream that refused the upgrade: its status, headers (hop-by-hop
 * removed) and body reach the client as they are, streamed, and the
 * connection closes after the body (which also delimits it).
 */
export function passRefusal(socket: Duplex, res: IncomingMessage): void {
  const headers = stripResponseHeaders(res.headers)
  let head = `HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}\r\n`
  for (const name in headers) {
    const v = headers[name]
    if (v === undefined) continue
    if (Array.isArray(v)) for (const one of v) head += `${name}: ${one}\r\n`
    else head += `${name}: ${v}\r\n`
  }
  socket.write(`${head}connection: close\r\n\r\n`)
  res.on('error', () => socket.destroy())
  socket.on('error', () => res.destroy())
  res.pipe(socket)
  // Nothing the client sends now is wanted; reading on sees its close (see endConnection).
  socket.resume()
}

/** Fields of an upstream's 101 that belong to its own connection or its own negotiation. */
const NOT_PASSED = new Set([
  'connection',
  'upgrade',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'sec-websocket-accept',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
])

/**
 * The 101's header lines with the request ID the handshake carried upstream,
 * an upstream's own copy replaced, as on an HTTP response (README "Request IDs").
 * `idName` is lower case. Once per handshake, never per message.
 */
export function withRequestId(lines: readonly string[], idName: string, id: string): string[] {
  const prefix = `${idName}:`
  const out = lines.filter((line) => !line.toLowerCase().startsWith(prefix))
  out.push(`${idName}: ${id}`)
  return out
}

/** The upstream's 101 header lines that the client should still see (Set-Cookie and the like). */
export function passedUpgradeHeaders(res: IncomingMessage): string[] {
  const raw = res.rawHeaders
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    if (!NOT_PASSED.has(raw[i]!.toLowerCase())) out.push(`${raw[i]}: ${raw[i + 1]}`)
  }
  return out
}
