import type { Logger } from 'pino'
import type { AccessLog } from './forward.js'

/**
 * The access log (README "Logs"): one pino line per request, tagged
 * `"log":"access"`. Built only when `log.access` is on; off, the data path
 * pays one undefined check.
 */
export function accessLogger(log: Logger): AccessLog {
  const access = log.child({ log: 'access' })
  return (req, socket, status, ms, instance, requestId, bytes) => {
    const h = req.headers
    access.info({
      requestId,
      method: req.method,
      host: h.host ?? h[':authority'],
      path: req.url,
      status,
      bytes,
      ms: Math.round(ms * 1000) / 1000,
      version: instance?.version.name,
      instance: instance?.url,
      client: socket.remoteAddress,
      userAgent: h['user-agent'],
    })
  }
}
