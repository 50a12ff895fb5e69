import type { buildConnector as UndiciConnector, Client } from 'undici'
import { buildConnector } from './undici-parts.js'
import type { UpstreamTransport } from '../routing/instance.js'

/** The undici options a transport decides: how to connect, and whether the connection speaks HTTP/2. */
export type TransportOptions = Pick<Client.Options, 'connect' | 'allowH2' | 'pipelining' | 'maxConcurrentStreams'>

/**
 * Streams per HTTP/2 connection: Node's and grpc-go's default
 * SETTINGS_MAX_CONCURRENT_STREAMS is 100, and a server announcing fewer
 * lowers it (undici reads the peer's settings).
 */
const H2_STREAMS = 100

/**
 * Connection options for one instance (README "Upstream TLS and HTTP/2"),
 * shared by the data path's pool and the probe so both reach an instance
 * the same way. `https:` URLs use TLS (verified against `tls.ca` or the
 * system roots unless `tls.verify` is false); `h2` negotiates HTTP/2 by
 * ALPN, `h2c` speaks it in clear by prior knowledge (undici's `useH2c`,
 * which only its own connector honours, so the connector is built here).
 * Plain HTTP/1.1 (the default) gets exactly the options it always had.
 */
export function transportOptions(t: UpstreamTransport, url: string, connectMs: number): TransportOptions {
  const tls = url.charCodeAt(4) === 115 /* https */
  if (t.protocol === 'h2c') {
    return {
      connect: buildConnector({ timeout: connectMs, noDelay: true, allowH2: true, useH2c: true } as UndiciConnector.BuildOptions),
      allowH2: true,
      pipelining: H2_STREAMS,
      maxConcurrentStreams: H2_STREAMS,
    }
  }
  const h2 = t.protocol === 'h2'
  if (!tls) return { connect: { timeout: connectMs, noDelay: true }, pipelining: 1 }
  return {
    connect: {
      timeout: connectMs,
      noDelay: true,
      rejectUnauthorized: t.verify,
      ...(t.ca !== undefined ? { ca: t.ca } : {}),
      ...(t.servername !== undefined ? { servername: t.servername } : {}),
    },
    allowH2: h2,
    pipelining: h2 ? H2_STREAMS : 1,
    ...(h2 ? { maxConcurrentStreams: H2_STREAMS } : {}),
  }
}
