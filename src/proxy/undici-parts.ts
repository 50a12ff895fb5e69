import { createRequire } from 'node:module'
import type * as Undici from 'undici'

// undici's index loads all of undici (fetch, WebSocket, EventSource, the cache, cookies, mocks, the request/stream
// API: ~110 files, ~110 ms of CPU). The data path dispatches on a Pool and needs only these two parts, and a worker
// booting in a rolling restart competes for the cores with the worker serving traffic. They are the very objects
// undici's index exports (test/unit/proxy/undici-parts.test.ts holds that across undici upgrades).
const require = createRequire(import.meta.url)

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof Undici.Pool
export const buildConnector = require('undici/lib/core/connect.js') as typeof Undici.buildConnector
export type Pool = Undici.Pool
