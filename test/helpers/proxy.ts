import { pino } from 'pino'
import { buildConfig, type Config } from '../../src/config/load.js'
import { type Running, runSluice } from '../../src/lifecycle/run.js'
import type { StateStore } from '../../src/state/store.js'

export interface TestProxy extends Running {
  url: string
  adminUrl: string
  config: Config
}

export const TEST_TOKEN = 'test-token'

/**
 * Starts the real proxy in-process on ephemeral loopback ports from a raw
 * config object (the same validation as a file). listen/admin default to
 * 127.0.0.1:0 and the admin token to TEST_TOKEN.
 */
export async function startProxy(
  raw: Record<string, unknown>,
  opts: { store?: StateStore; source?: string } = {},
): Promise<TestProxy> {
  const config = buildConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token: TEST_TOKEN },
      log: { level: process.env.SLUICE_TEST_LOG ?? 'silent' },
      ...raw,
    },
    opts.source,
  )
  const log = pino({ level: config.log.level })
  const running = await runSluice(config, { log, ...(opts.store ? { store: opts.store } : {}) })
  return Object.assign(running, {
    url: `http://127.0.0.1:${running.port}`,
    adminUrl: `http://127.0.0.1:${running.adminPort}`,
    config,
  })
}

/** An admin API call with the test token; returns status and parsed JSON. */
export async function admin(
  p: { adminUrl: string },
  method: string,
  path: string,
  body?: unknown,
  token: string | null = TEST_TOKEN,
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {}
  if (token !== null) headers.authorization = `Bearer ${token}`
  // As `sluice ctl` does: a token-less admin refuses a POST/PUT that is not JSON, body or not.
  if (body !== undefined || method === 'POST' || method === 'PUT') headers['content-type'] = 'application/json'
  const res = await fetch(p.adminUrl + path, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {}
  return { status: res.status, body: parsed }
}
