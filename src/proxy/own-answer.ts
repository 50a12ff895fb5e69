import type { ServerResponse } from 'node:http'
import { errorBody, type SluiceError } from '../errors.js'
import { endWithHead, grpcMessage, grpcStatusForAnswer, isGrpc } from './grpc.js'

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
  if (isGrpc(res.req?.headers['content-type'])) return sendGrpcAnswer(res, err, closeConnection, idName, id)
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

/**
 * The same answer to a gRPC client (README "gRPC"): trailers-only, the
 * HTTP status kept, `grpc-status` 14 (UNAVAILABLE; 4 DEADLINE_EXCEEDED
 * for a timeout) and `grpc-message` with the code and message the JSON
 * body would have carried. Nothing in the body: a gRPC client would read
 * JSON as a malformed message.
 */
function sendGrpcAnswer(res: ServerResponse, err: SluiceError, closeConnection: boolean, idName: string, id: string): number {
  const headers: Record<string, string | number> = {
    'content-type': 'application/grpc',
    'grpc-status': grpcStatusForAnswer(err.status),
    'grpc-message': grpcMessage(`${err.code}: ${err.message}${id === '' ? '' : ` (request ${id})`}`),
  }
  // Connection is HTTP/1.1's alone (HTTP/2 refuses it).
  if (closeConnection && (res as { stream?: unknown }).stream === undefined) headers['connection'] = 'close'
  if (id !== '') headers[idName] = id
  endWithHead(res, err.status, headers)
  return 0
}
