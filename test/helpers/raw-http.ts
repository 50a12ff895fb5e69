import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { hashString } from '../../src/routing/hash.js'
import type { TestProxy } from './proxy.js'
import type { TestCa } from './tls-certs.js'

/** A connected client socket to a proxy on loopback: over TLS trusting `ca` (server name proxy.test) when given. */
export async function connectProxy(port: number, ca?: TestCa): Promise<Socket> {
  const at = { port, host: '127.0.0.1' }
  const socket = ca === undefined ? connect(at) : tlsConnect({ ...at, ca: ca.rootPem, servername: 'proxy.test' })
  socket.on('error', () => {})
  await new Promise<void>((r) => socket.once(ca === undefined ? 'connect' : 'secureConnect', r))
  return socket
}

export interface RawReply {
  /** Everything the peer sent before it closed (or before `timeoutMs`). */
  text: string
  /** The status of the first response line, or 0 when none came. */
  status: number
  /** Lower-cased header name -> value of the first response (repeated names joined with ", "). */
  headers: Record<string, string>
  body: string
  /** Whether the peer closed the connection (false: still open at `timeoutMs`). */
  closed: boolean
}

/** A raw keep-alive client connection that collects what comes back (`closedAt`: performance.now() at its close). */
export async function rawClient(
  port: number,
): Promise<{ socket: Socket; text: () => string; closed: Promise<void>; closedAt: () => number | undefined }> {
  const socket = connect(port, '127.0.0.1')
  let text = ''
  let closedAt: number | undefined
  socket.setEncoding('latin1').on('data', (d: string) => (text += d))
  socket.on('error', () => {})
  const closed = new Promise<void>((r) =>
    socket.on('close', () => {
      closedAt = performance.now()
      r()
    }),
  )
  await new Promise<void>((r) => socket.once('connect', () => r()))
  return { socket, text: () => text, closed, closedAt: () => closedAt }
}

/** The responses in a raw connection's text, each from its status code on. */
export const responses = (text: string): string[] => text.split('HTTP/1.1 ').slice(1)

/**
 * Writes raw bytes to a listener and collects whatever comes back until the
 * peer closes the connection or `timeoutMs` passes (then the socket is
 * destroyed). For requests no well-behaved client would send.
 */
export function rawExchange(
  port: number,
  chunks: (string | Buffer)[],
  opts: { timeoutMs?: number; keepOpen?: boolean } = {},
): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1')
    const got: Buffer[] = []
    let closed = false
    const timer = setTimeout(() => finish(), opts.timeoutMs ?? 5_000)
    const finish = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(parseReply(Buffer.concat(got).toString('latin1'), closed))
    }
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c)
    })
    socket.on('data', (d) => got.push(d))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the reply counts as a close; a refused connection is a test failure.
      if (err.code === 'ECONNREFUSED') {
        clearTimeout(timer)
        reject(err)
      }
    })
    socket.on('close', () => {
      closed = true
      finish()
    })
  })
}

export function parseReply(text: string, closed: boolean): RawReply {
  const end = text.indexOf('\r\n\r\n')
  const head = end === -1 ? text : text.slice(0, end)
  const lines = head.split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    const name = line.slice(0, i).trim().toLowerCase()
    const value = line.slice(i + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  return { text, status: m ? Number(m[1]) : 0, headers, body: end === -1 ? '' : text.slice(end + 4), closed }
}

/**
 * A value of the proxy's sticky key header that the current routing sends
 * (with the `extra` headers, e.g. an override) to the instance `url`: lets
 * a test aim a request at one instance without depending on hash values.
 */
export function keyFor(
  proxy: TestProxy,
  url: string,
  extra: Record<string, string> = {},
  header = 'x-user-id',
): string {
  const table = proxy.sluice.routing.table
  for (let i = 0; i < 100_000; i++) {
    const key = `aim-${i}`
    const headers = { ...extra, [header]: key }
    const hash = table.keyOf(headers)
    if (hash !== hashString(key)) throw new Error(`the proxy does not read sticky keys from ${header}`)
    const route = table.chooseVersion(headers, hash)
    if (route !== undefined && table.chooseInstance(route, hash)?.url === url) return key
  }
  throw new Error(`no sticky key routes to ${url}`)
}

/** Open client connections on the proxy's public listener. */
export function connections(proxy: TestProxy): Promise<number> {
  return new Promise((resolve, reject) =>
    proxy.sluice.listener.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  )
}

/** Requests in flight across every instance of the proxy. */
export function inflight(proxy: TestProxy): number {
  return proxy.sluice.versions.reduce((n, v) => n + v.instances.reduce((m, i) => m + i.inflight, 0), 0)
}

/** An http:// URL on a loopback port nobody listens on (connections are refused). */
export async function refusedUrl(): Promise<string> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  await new Promise((r) => server.close(r))
  return `http://127.0.0.1:${port}`
}

/** A raw TCP test server listening on a free loopback port: its http:// URL. */
export async function listenLoopback(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Destroys the server's open `sockets`, then closes it. */
export async function closeServer(server: Server, sockets: Iterable<Socket>): Promise<void> {
  for (const s of sockets) s.destroy()
  await new Promise((r) => server.close(r))
}
