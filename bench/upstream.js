// Bench upstream: one loopback HTTP server per name given on the command line,
// all in this one process, answering every path with a fixed JSON body of
// --body-bytes bytes (prebuilt, so the upstream costs the same for every target).
//   node bench/upstream.js blue green --body-bytes 128 [--same-body]
// Prints {"msg":"listening","ports":{"blue":N,...}} on stdout once all listen.
import { createServer } from 'node:http'
import { parseFlags } from './lib.js'

const flags = parseFlags(
  { 'body-bytes': 128, 'same-body': false },
  'usage: node bench/upstream.js NAME... [--body-bytes N] [--same-body]',
  { positionals: true },
)
const bodyBytes = flags['body-bytes']
const names = flags._
const ports = {}

// --same-body: every name answers the same bytes (only x-upstream tells them apart), as a
// candidate that behaves like the live version does.
const sameBody = flags['same-body']

for (const name of names.length > 0 ? names : ['app']) {
  const head = `{"version":"${sameBody ? 'any' : name}","pad":"`
  const body = Buffer.from(`${head}${'x'.repeat(Math.max(0, bodyBytes - head.length - 2))}"}`)
  const headers = { 'content-type': 'application/json', 'content-length': body.length, 'x-upstream': name }
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(200, headers)
    res.end(body)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  ports[name] = server.address().port
}
process.once('SIGTERM', () => process.exit(0))
process.stdout.write(`${JSON.stringify({ msg: 'listening', ports })}\n`)
