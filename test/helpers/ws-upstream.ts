import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { expect } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { startUpstream, type TestUpstream } from './upstream.js'

export interface WsUpstream extends TestUpstream {
  readonly wss: WebSocketServer
  /** Open server-side sockets. */
  readonly clients: Set<WebSocket>
  /** Upgrade requests seen, newest last (headers as the upstream got them). */
  readonly upgrades: IncomingMessage[]
  /** Answer the next upgrades with this status and body instead of accepting. */
  refuse: { status: number; body: string } | undefined
}

export interface WsUpstreamOptions {
  /** Called for every accepted WebSocket; default: echo each message with its type. */
  onConnection?: (ws: WebSocket, req: IncomingMessage, u: WsUpstream) => void
  /** Picks the subprotocol from the client's offer (ws's handleProtocols). */
  handleProtocols?: (offered: Set<string>) => string | false
  perMessageDeflate?: boolean
  /** Listen on this port and loopback address (default: a free port on 127.0.0.1). */
  port?: number
  host?: string
  /** Extra header lines on every 101 this upstream sends ("Name: value"). */
  upgradeHeaders?: string[]
}

/** Echoes every message back with the same type (text or binary). */
export function echo(ws: WebSocket): void {
  ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
}

/**
 * A WebSocket upstream on a real loopback port, on top of the HTTP test
 * upstream (so /healthz and plain requests still work).
 */
export async function startWsUpstream(name: string, opts: WsUpstreamOptions = {}): Promise<WsUpstream> {
  const base = await startUpstream(name, undefined, opts.port ?? 0, opts.host ?? '127.0.0.1')
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: opts.perMessageDeflate ?? false,
    maxPayload: 64 * 1024 * 1024,
    ...(opts.handleProtocols ? { handleProtocols: (p: Set<string>) => opts.handleProtocols!(p) } : {}),
  })
  const extra = opts.upgradeHeaders
  if (extra !== undefined) wss.on('headers', (lines) => lines.push(...extra))
  const u = Object.assign(base, {
    wss,
    clients: new Set<WebSocket>(),
    upgrades: [] as IncomingMessage[],
    refuse: undefined as { status: number; body: string } | undefined,
  }) as WsUpstream
  base.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    u.upgrades.push(req)
    if (u.refuse) {
      const { status, body } = u.refuse
      socket.end(
        `HTTP/1.1 ${status} Nope\r\nContent-Type: text/plain\r\nX-Refused-By: ${name}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      )
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      u.clients.add(ws)
      ws.on('close', () => u.clients.delete(ws))
      ws.on('error', () => {})
      ;(opts.onConnection ?? echo)(ws, req, u)
    })
  })
  const close = base.close.bind(base)
  u.close = async () => {
    for (const ws of u.clients) ws.terminate()
    await close()
  }
  return u
}

export interface Closed {
  code: number
  reason: string
}

/** Opens a client WebSocket and waits for it to be open (rejects on a refused handshake, with the status). */
export function openClient(
  url: string,
  protocols?: string | string[],
  options: WebSocket.ClientOptions = {},
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, options)
    ws.once('open', () => resolve(ws))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d))
      res.on('end', () =>
        reject(
          Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, body, headers: res.headers }),
        ),
      )
    })
    ws.once('error', reject)
  })
}

/** The next message a socket receives. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })))
}

/** Resolves with the close code and reason once the socket closes. */
export function whenClosed(ws: WebSocket): Promise<Closed> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: 1006, reason: '' })
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
}

/** ws:// form of an http:// proxy URL. */
export function wsUrl(httpUrl: string, path = '/'): string {
  return httpUrl.replace(/^http/, 'ws') + path
}

/**
 * README "Request IDs" for a WebSocket: the client's 101 carries the ID the
 * upstream's handshake got (the client's own, else a new one), once, never
 * an upstream's own copy (`upstreams` each add one to their 101). Answers the
 * sockets it opened, for the caller to close.
 */
export async function expectHandshakeIds(proxyUrl: string, upstreams: readonly WsUpstream[]): Promise<WebSocket[]> {
  const opened: WebSocket[] = []
  const seen = async (headers: Record<string, string>) => {
    const before = upstreams.map((u) => u.upgrades.length)
    let answered: IncomingHttpHeaders = {}
    const ws = new WebSocket(wsUrl(proxyUrl), { headers })
    opened.push(ws)
    ws.once('upgrade', (res) => (answered = res.headers))
    await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject))
    const took = upstreams.find((u, i) => u.upgrades.length > before[i]!)!
    return { answered, upstream: took.upgrades.at(-1)!.headers }
  }
  const own = await seen({ 'x-request-id': 'ws-trace-1' })
  expect(own.upstream['x-request-id']).toBe('ws-trace-1')
  expect(own.answered['x-request-id']).toBe('ws-trace-1')
  const fresh = await seen({})
  expect(fresh.answered['x-request-id']).toMatch(/^[0-9a-f]{8}-/)
  expect(fresh.answered['x-request-id']).toBe(fresh.upstream['x-request-id'])
  return opened
}
