import { createServer as createHttpsServer } from 'node:https'
import { createSecureServer, createServer as createH2cServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

export interface SeenRequest {
  path: string
  httpVersion: string
  /** The TLS server name the client asked for (SNI), or undefined. */
  servername: string | undefined
  headers: Record<string, string | string[] | undefined>
}

export interface TlsUpstream {
  readonly url: string
  /** Every request, /healthz included (probes show here). */
  readonly seen: SeenRequest[]
  close(): Promise<void>
}

type AnyReq = IncomingMessage | Http2ServerRequest
type AnyRes = ServerResponse | Http2ServerResponse

/**
 * An upstream speaking `https` (HTTP/1.1 over TLS), `h2` (HTTP/2 over TLS,
 * ALPN h2 only) or `h2c` (cleartext HTTP/2 by prior knowledge), answering
 * JSON naming itself and the HTTP version it was spoken to in; /healthz
 * answers 200. `tls`: its certificate and key (https and h2).
 */
export async function startTlsUpstream(
  name: string,
  kind: 'https' | 'h2' | 'h2c',
  tls?: { cert: string; key: string },
): Promise<TlsUpstream> {
  const seen: SeenRequest[] = []
  const handler = (req: AnyReq, res: AnyRes) => {
    const socket = req.socket as TLSSocket
    seen.push({
      path: req.url ?? '',
      httpVersion: req.httpVersion,
      servername: typeof socket.servername === 'string' ? socket.servername : undefined,
      headers: { ...req.headers },
    })
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.stringify({
        name,
        httpVersion: req.httpVersion,
        path: req.url,
        method: req.method,
        received: Buffer.concat(chunks).length,
      })
      const r = res as ServerResponse
      r.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name })
      r.end(body)
    })
  }
  const sockets = new Set<Socket>()
  const server =
    kind === 'https'
      ? createHttpsServer({ ...tls }, handler)
      : kind === 'h2'
        ? createSecureServer({ ...tls }, handler)
        : createH2cServer(handler)
  server.on(kind === 'h2c' ? 'connection' : 'secureConnection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `${kind === 'h2c' ? 'http' : 'https'}://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  }
}
