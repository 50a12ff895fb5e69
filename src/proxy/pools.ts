import { Pool } from 'undici'
import type { Instance } from '../routing/instance.js'

export interface PoolOptions {
  connectMs: number
  upstreamMs: number
  bodyIdleMs: number
}

const UPSTREAM_SOCKET_BUFFER = 256 * 1024

/**
 * One keep-alive connection pool per instance. Idle upstream connections are
 * closed before the typical upstream keep-alive timeout (Node's default is
 * 5 s) so a request is rarely written to a socket the upstream is closing;
 * undici also honours an upstream's `Keep-Alive: timeout=` hint.
 */
export function openPool(instance: Instance, opts: PoolOptions): Pool {
  // A request body arrives in 64 KiB reads; at undici's 64 KiB mark every one of them filled the
  // socket and paused the client's upload until the next tick. A few reads of room on the writing
  // side keeps it streaming, still bounded; the reading side keeps 64 KiB. (undici sets highWaterMark, which would win over both;
  // its types do not list these net.Socket options.)
  const connect = {
    timeout: opts.connectMs,
    noDelay: true,
    highWaterMark: undefined,
    readableHighWaterMark: 64 * 1024,
    writableHighWaterMark: UPSTREAM_SOCKET_BUFFER,
  }
  const pool = new Pool(instance.url, {
    connect,
    headersTimeout: opts.upstreamMs,
    bodyTimeout: opts.bodyIdleMs,
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    keepAliveTimeoutThreshold: 1_000,
    pipelining: 1,
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

/** Cancels whatever is still in flight (drain timeout) and opens a fresh pool. */
export async function resetPool(instance: Instance, opts: PoolOptions, reason: Error): Promise<void> {
  const old = instance.pool
  openPool(instance, opts)
  if (old && !old.destroyed) await old.destroy(reason).catch(() => {})
}
