import { Pool } from './undici-parts.js'
import type { Instance, UpstreamPool } from '../routing/instance.js'
import { H2Pool } from './h2-pool.js'
import { transportOptions } from './transport-options.js'

export interface PoolOptions {
  connectMs: number
  upstreamMs: number
  bodyIdleMs: number
  /** limits.upstreamConnections: requests beyond it wait in the pool's queue. */
  upstreamConnections: number
  /** limits.maxResponseHeaderBytes: a larger response head fails the request (502). */
  maxResponseHeaderBytes: number
}

/**
 * One keep-alive connection pool per instance. Idle upstream connections are
 * closed before the typical upstream keep-alive timeout (Node's default is
 * 5 s) so a request is rarely written to a socket the upstream is closing;
 * undici also honours an upstream's `Keep-Alive: timeout=` hint.
 */
export function openPool(instance: Instance, opts: PoolOptions): UpstreamPool {
  const transport = instance.version.transport
  if (transport.protocol !== 'http1') {
    instance.pool = new H2Pool(instance.url, transport, {
      connectMs: opts.connectMs,
      headersTimeout: opts.upstreamMs,
      bodyTimeout: opts.bodyIdleMs,
      maxResponseHeaderBytes: opts.maxResponseHeaderBytes,
    })
    return instance.pool
  }
  const pool = new Pool(instance.url, {
    ...transportOptions(instance.version.transport, instance.url, opts.connectMs),
    headersTimeout: opts.upstreamMs,
    bodyTimeout: opts.bodyIdleMs,
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    keepAliveTimeoutThreshold: 1_000,
    connections: opts.upstreamConnections,
    maxHeaderSize: opts.maxResponseHeaderBytes,
  })
  // A pool error is also delivered to each request's handler; this only keeps
  // an unhandled 'error' from ever reaching the process.
  pool.on('connectionError', () => {})
  instance.pool = pool
  return pool
}

/** Lets in-flight requests finish, then closes the connections. */
export async function closePool(instance: Instance): Promise<void> {
  const pool = instance.pool
  instance.pool = undefined
  if (pool && !pool.closed && !pool.destroyed) await pool.close().catch(() => {})
}

/** The version's transport changed (reload): new requests take new connections, those in flight finish on the old. */
export function replacePool(instance: Instance, opts: PoolOptions): void {
  const old = instance.pool
  openPool(instance, opts)
  if (old && !old.closed && !old.destroyed) old.close().catch(() => {})
}

/** Cancels whatever is still in flight (drain timeout) and opens a fresh pool. */
export async function resetPool(instance: Instance, opts: PoolOptions, reason: Error): Promise<void> {
  const old = instance.pool
  openPool(instance, opts)
  if (old && !old.destroyed) await old.destroy(reason).catch(() => {})
}
