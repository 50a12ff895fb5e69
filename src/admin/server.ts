import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { AdminError, errorBody, SluiceError } from '../errors.js'
import { listenOn } from '../proxy/listen.js'
import type { TokenCheck } from './auth.js'
import { BrowserGuard } from './browser-guard.js'

export const MAX_BODY_BYTES = 64 * 1024

export interface AdminRequest {
  body: unknown
  /** The token's name; the audit `actor`. */
  actor: string
  req: IncomingMessage
}

export interface AdminReply {
  status: number
  body: unknown
  headers?: Record<string, string>
}

export type AdminHandler = (r: AdminRequest) => Promise<AdminReply> | AdminReply

interface Route {
  auth: boolean
  handler: AdminHandler
}

/**
 * The admin listener: a small router (exact paths, 404 unknown, 405 wrong
 * method with Allow), bearer auth on /v1/*, JSON bodies up to 64 KiB, and
 * one place where errors become the README's error body (Admin API).
 */
export class AdminServer {
  readonly server: Server
  readonly #routes = new Map<string, Map<string, Route>>()
  /** Set once bound, and only without a token: see BrowserGuard. */
  #guard: BrowserGuard | undefined

  constructor(
    readonly tokens: TokenCheck,
    readonly log: Logger,
  ) {
    this.server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, (req, res) => {
      void this.#handle(req, res)
    })
    this.server.keepAliveTimeout = 5_000
  }

  /**
   * Awaited before a changing answer (any method but GET and HEAD) is sent:
   * with workers, until every worker has applied the change (README
   * "Workers and self-upgrade").
   */
  settle: (() => Promise<void>) | undefined

  route(method: string, path: string, handler: AdminHandler): this {
    let byMethod = this.#routes.get(path)
    if (!byMethod) this.#routes.set(path, (byMethod = new Map()))
    byMethod.set(method, { auth: path.startsWith('/v1/'), handler })
    if (method === 'GET' && !byMethod.has('HEAD')) byMethod.set('HEAD', { auth: path.startsWith('/v1/'), handler })
    return this
  }

  async listen(host: string, port: number): Promise<number> {
    const bound = await listenOn(this.server, host, port)
    if (this.tokens.open) this.#guard = new BrowserGuard(host, bound)
    return bound
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0]!
      const byMethod = this.#routes.get(path)
      if (!byMethod) throw new AdminError(404, 'SLUICE_NOT_FOUND', `no route ${path}`)
      const route = byMethod.get(req.method ?? 'GET')
      if (!route) {
        res.setHeader('allow', [...byMethod.keys()].join(', '))
        throw new AdminError(405, 'SLUICE_METHOD_NOT_ALLOWED', `${req.method} not allowed on ${path}`)
      }
      let actor = 'anonymous'
      if (route.auth) {
        this.#guard?.check(req)
        const a = this.tokens.actor(req.headers.authorization)
        if (a === undefined) {
          res.setHeader('www-authenticate', 'Bearer')
          throw new AdminError(401, 'SLUICE_UNAUTHORIZED', 'missing or wrong bearer token')
        }
        actor = a
      }
      const body = await readJsonBody(req)
      const reply = await route.handler({ body, actor, req })
      if (this.settle !== undefined && req.method !== 'GET' && req.method !== 'HEAD') await this.settle()
      send(res, reply.status, reply.body, reply.headers)
    } catch (err) {
      const e = toAdminError(err)
      if (e.status >= 500) this.log.error({ err }, 'admin request failed')
      send(res, e.status, errorBody(e))
    }
  }
}

function toAdminError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err
  return new AdminError(500, 'SLUICE_INTERNAL', err instanceof Error ? err.message : String(err))
}

function send(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  if (typeof body === 'string') {
    res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers })
    res.end(body)
    return
  }
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(text)
}

/** undefined for no body; 415 for a non-JSON body; 413 above the limit; 400 for bad JSON. */
async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const cl = req.headers['content-length']
  const chunked = req.headers['transfer-encoding'] !== undefined
  if ((cl === undefined || cl === '0') && !chunked) {
    req.resume()
    return undefined
  }
  const type = req.headers['content-type'] ?? ''
  if (!/^application\/(.+\+)?json\s*(;|$)/i.test(type)) {
    req.resume()
    throw new AdminError(415, 'SLUICE_UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json')
  }
  if (cl !== undefined && Number(cl) > MAX_BODY_BYTES) {
    req.resume()
    throw new AdminError(413, 'SLUICE_BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) {
      req.resume()
      throw new AdminError(413, 'SLUICE_BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`)
    }
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') return undefined
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new AdminError(400, 'SLUICE_INVALID_JSON', `invalid JSON: ${(err as Error).message}`)
  }
}
