import type { ServerResponse } from 'node:http'
import { errorBody, type SluiceError } from '../errors.js'

/**
 * The proxy's own answer (400, 405, 408, 502, 503, 504) with the JSON error
 * body (README "Proxying rules", own answers); with a request ID, the body
 * and the ID header carry it (README "Request IDs"). Returns the body's
 * length in bytes (0 when nothing could be written), for the access log.
 */
export function sendOwnAnswer(
  res: ServerResponse,
  err: SluiceError,
  closeConnection: boolean,
  idName = '',
  id = '',
): number {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return 0
  }
  const answer = errorBody(err)
  if (id !== '') answer.error.requestId = id
  const body = JSON.stringify(answer)
  const length = Buffer.byteLength(body)
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': length,
    'cache-control': 'no-store',
  }
  // HTTP/2 has no Connection header (a graceful stop sends GOAWAY instead).
  if (closeConnection && res.req.httpVersionMajor !== 2) headers['connection'] = 'close'
  if (id !== '') headers[idName] = id
  res.writeHead(err.status, headers)
  res.end(body)
  return length
}
