// Fault-injecting upstream for bench/soak.js: two loopback servers (two instances) in one process.
//   /ok            200, 1 KiB (a POST's body is read first)
//   /slow-body     200, 64 KiB in two halves 300 ms apart (the soak's client aborts in between)
//   /reset         200 with Content-Length 4096, 1 KiB of it, then a TCP reset
//   /close         the connection closed before any response byte
//   /garbage       bytes that are not HTTP
//   /hang          no answer at all (sluice's timeouts.upstreamMs ends it)
//   /healthz       200
// Prints {"msg":"listening","ports":[a,b]} on stdout once both listen.
import { createServer } from 'node:http'

const OK = Buffer.alloc(1024, 'o')
const HALF = Buffer.alloc(32 * 1024, 'h')

function handle(req, res) {
  const path = req.url
  if (path === '/close') return void req.socket.destroy()
  if (path === '/garbage') {
    req.socket.end('HTTP/1.1 ok fine\r\nthis is : not : http\r\n\x00\x01\x02\r\n\r\n')
    return
  }
  if (path === '/hang') return void req.resume()
  req.resume()
  req.once('end', () => {
    if (path === '/reset') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 4096 })
      res.write(OK)
      setImmediate(() => req.socket.resetAndDestroy())
      return
    }
    if (path === '/slow-body') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': HALF.length * 2 })
      res.write(HALF)
      setTimeout(() => res.end(HALF), 300).unref()
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': OK.length })
    res.end(OK)
  })
}

const ports = []
for (let i = 0; i < 2; i++) {
  const server = createServer(handle)
  server.keepAliveTimeout = 10_000
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  ports.push(server.address().port)
}
process.once('SIGTERM', () => process.exit(0))
process.stdout.write(`${JSON.stringify({ msg: 'listening', ports })}\n`)
