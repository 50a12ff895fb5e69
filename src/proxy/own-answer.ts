import type { ServerResponse } from 'node:http'
import { errorBody, type SluiceError } from '../errors.js'

/** The proxy's own answer (400, 405, 408, 502, 503, 504) with the JSON error body (README "Proxying rules", own answers). */
export function sendOwnAnswer(res: ServerResponse, err: SluiceError, closeConnection: boolean): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  const body = JSON.stringify(errorBody(err))
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(closeConnection ? { connection: 'close' } : {}),
  })
  res.end(body)
}
