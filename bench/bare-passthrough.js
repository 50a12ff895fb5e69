// The floor any Node reverse proxy pays: node:http server, one undici Pool,
// request and response headers passed (hop-by-hop ones dropped), the response
// body streamed back. No routing, no metrics, no retries.
//   node bench/bare-passthrough.js http://127.0.0.1:PORT... [--copy-to URL --copy-every N] [--tls-cert PEM --tls-key PEM]
// Several upstream URLs: one Pool each, one picked at random per request (the floor at N instances,
// for bench/proxy.js --instances 2,200).
// --copy-to: every Nth request (default 10) is also sent to URL once the callback that sent it has
// returned, fire and forget (answer discarded, nothing compared): the floor of mirroring's cost,
// for bench/mirror.js --bare. --tls-cert/--tls-key: a node:https server instead (HTTP/1.1 over TLS, TLS 1.2+),
// the floor for bench/tls.js.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import { Pool } from 'undici'
import { parseFlags, usageError } from './lib.js'

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'])
const poolOptions = { pipelining: 1, keepAliveTimeout: 4_000, connect: { noDelay: true } }
const flags = parseFlags(
  { 'copy-to': '', 'copy-every': 10, 'tls-cert': '', 'tls-key': '' },
  'usage: node bench/bare-passthrough.js http://127.0.0.1:PORT... [--copy-to URL] [--copy-every N] [--tls-cert PEM --tls-key PEM]',
  { positionals: true },
)
if (flags._.length === 0) usageError('an upstream URL wanted')
const pools = flags._.map((url) => new Pool(url, poolOptions))
const copyTo = flags['copy-to'] || undefined
const copyEvery = flags['copy-every']
const shadow = copyTo === undefined ? undefined : new Pool(copyTo, poolOptions)
const discard = { onRequestStart() {}, onResponseStart() {}, onResponseData() {}, onResponseEnd() {}, onResponseError() {} }
let seen = 0

const tls = flags['tls-cert'] === '' ? undefined : { cert: readFileSync(flags['tls-cert']), key: readFileSync(flags['tls-key']), minVersion: 'TLSv1.2' }
const handler = (req, res) => {
  const headers = []
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1])
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  const pool = pools.length === 1 ? pools[0] : pools[Math.floor(Math.random() * pools.length)]
  pool.stream(
    { path: req.url, method: req.method, headers, body: hasBody ? req : null, opaque: res },
    ({ statusCode, headers, opaque }) => {
      for (const name of HOP) delete headers[name]
      opaque.writeHead(statusCode, headers)
      return opaque
    },
    (err) => {
      if (!err) return
      if (res.headersSent) res.destroy(err)
      else res.writeHead(502).end()
    },
  )
  if (shadow !== undefined && !hasBody && ++seen % copyEvery === 0) {
    const copy = { path: req.url, method: req.method, headers, body: null }
    process.nextTick(() => shadow.dispatch(copy, discard))
  }
}
const server = tls === undefined ? createServer(handler) : createTlsServer(tls, handler)
// Exit through process.exit so --cpu-prof writes its profile.
process.once('SIGTERM', () => process.exit(0))
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`)
})
