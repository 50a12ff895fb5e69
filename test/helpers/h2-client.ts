import { execFile } from 'node:child_process'
import {
  type ClientHttp2Session,
  connect,
  type IncomingHttpHeaders,
  type IncomingHttpStatusHeader,
  type OutgoingHttpHeaders,
} from 'node:http2'
import type { TLSSocket } from 'node:tls'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface H2Answer {
  status: number
  headers: IncomingHttpHeaders & IncomingHttpStatusHeader
  body: string
  trailers: IncomingHttpHeaders
}

/** An HTTP/2 session with node's client: `https://` with the test CA (and a server name), or `http://` for h2c. */
export async function h2Session(url: string, opts: { ca?: string; servername?: string } = {}): Promise<ClientHttp2Session> {
  const session = connect(url, {
    ...(opts.ca !== undefined && { ca: opts.ca }),
    ...(opts.servername !== undefined && { servername: opts.servername }),
  })
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve())
    session.once('error', reject)
  })
  session.on('error', () => {})
  return session
}

/** The certificate the server showed on a TLS session: its SHA-256 fingerprint. */
export function peerFingerprint(session: ClientHttp2Session): string {
  return (session.socket as TLSSocket).getPeerCertificate().fingerprint256
}

/** One request on a session; resolves once the stream ended (trailers included). */
export function h2Request(
  session: ClientHttp2Session,
  path: string,
  headers: OutgoingHttpHeaders = {},
  body?: string | Buffer,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers }, { endStream: body === undefined })
    let head: H2Answer['headers'] | undefined
    let trailers: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    stream.on('response', (h) => {
      head = h
    })
    stream.on('trailers', (t) => {
      trailers = t
    })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('error', reject)
    stream.on('close', () => {
      if (head === undefined) {
        reject(new Error(`stream closed without a response (code ${stream.rstCode})`))
        return
      }
      resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks).toString(), trailers })
    })
    if (body !== undefined) stream.end(body)
  })
}

export interface CurlAnswer {
  status: number
  /** The HTTP version curl used: "2" or "1.1". */
  version: string
  body: string
}

/** Debian's curl (built with nghttp2): a real third-party HTTP/2 client. */
export async function curl(args: string[]): Promise<CurlAnswer> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code} %{http_version}', ...args])
  const cut = stdout.lastIndexOf('\n')
  const [status, version] = stdout.slice(cut + 1).split(' ')
  return { status: Number(status), version: version!, body: stdout.slice(0, cut) }
}
