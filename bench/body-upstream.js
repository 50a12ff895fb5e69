// Bench upstream for large bodies (bench/bodies.js), in its own process:
//   GET  /download?bytes=N   N bytes (Content-Length), written 64 KiB at a time with backpressure
//   POST /upload             reads the whole body, answers {"bytes":N}
//   GET  anything else       a small JSON answer (probes, latency runs)
// Prints {"msg":"listening","port":N} on stdout once listening.
import { createServer } from 'node:http'

const CHUNK = Buffer.alloc(64 * 1024, 'x')
const SMALL = Buffer.from('{"ok":true}')

const server = createServer((req, res) => {
  if (req.method === 'POST') {
    let bytes = 0
    req.on('data', (c) => (bytes += c.length))
    req.on('end', () => {
      const body = JSON.stringify({ bytes })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
    return
  }
  req.resume()
  const q = req.url.indexOf('?bytes=')
  if (!req.url.startsWith('/download') || q < 0) {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': SMALL.length })
    res.end(SMALL)
    return
  }
  let left = Number(req.url.slice(q + 7))
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left })
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length)
      left -= n
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', pump)
    }
    res.end()
  }
  pump()
})
server.keepAliveTimeout = 60_000
process.once('SIGTERM', () => process.exit(0))
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`)
})
