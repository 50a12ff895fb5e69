import fc from 'fast-check'

/**
 * Generated HTTP/1.1 client byte streams for the properties about hostile
 * clients (request desync, connection lifetime): pipelined requests with
 * plain, duplicated and obfuscated framing headers, bare LF/CR line ends,
 * chunk extensions and broken chunks, cut at random places into separate
 * TCP writes. A request's path is /p0, /p1, ... by its place in the stream.
 * The framing pieces serve the response side too (response framing).
 */

export const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'

/** One request of the stream: request line, framing headers (plain, duplicated, obfuscated), body. */
export const request = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    host: fc.constantFrom(true, true, true, true, false),
    // Well-formed framing most of the time, so that pipelines get past their first request.
    cl: fc.oneof(
      { arbitrary: fc.constantFrom(undefined, 'exact'), weight: 3 },
      fc.constantFrom('short', 'long', 'dup-same', 'dup-diff', ' +N', '0N', 'N, N', '-1', 'N\t', 'zero'),
    ),
    te: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 3 },
      fc.constantFrom(
        'chunked',
        'Chunked',
        ' chunked',
        'chunked, identity',
        'identity, chunked',
        'xchunked',
        'chunked\t',
        'dup',
        'name-space',
        'name-underscore',
        'folded',
      ),
    ),
    eol: fc.constantFrom('\r\n', '\r\n', '\r\n', '\r\n', '\r\n', '\r\n', '\n', '\r'),
    body: fc.array(fc.oneof(fc.string({ maxLength: 12 }), fc.constant(SMUGGLED)), { maxLength: 3 }),
    chunkExt: fc.boolean(),
    badChunk: fc.constantFrom(false, false, false, true),
  })
  .map((r) => {
    const body = r.body.join('')
    const { fields, chunked } = framing(r.cl, r.te, Buffer.byteLength(body))
    if (r.host) fields.unshift('Host: shop.example')
    const payload = chunked ? chunkedPayload(r.body, { ext: r.chunkExt, bad: r.badChunk }) : body
    const head = [`${r.method} /p0 ${r.version}`, ...fields].join(r.eol)
    return `${head}${r.eol}${r.eol}${payload}`
  })

/**
 * Framing header fields for a body of `len` bytes, and whether the body is
 * to be chunked. `cl`: 'exact', 'short', 'long', 'dup-same', 'dup-diff',
 * 'zero', or a raw value in which N stands for the length ('N, N', ' +N').
 * `te`: 'dup', 'name-space', 'name-underscore', 'folded', or a raw value.
 */
export function framing(cl: string | undefined, te: string | undefined, len: number): { fields: string[]; chunked: boolean } {
  const fields: string[] = []
  const n = String(len)
  switch (cl) {
    case undefined:
      break
    case 'exact':
      fields.push(`Content-Length: ${n}`)
      break
    case 'short':
      fields.push(`Content-Length: ${Math.max(0, len - 3)}`)
      break
    case 'long':
      fields.push(`Content-Length: ${len + 5}`)
      break
    case 'dup-same':
      fields.push(`Content-Length: ${n}`, `Content-Length: ${n}`)
      break
    case 'dup-diff':
      fields.push(`Content-Length: ${n}`, `Content-Length: ${len + 1}`)
      break
    case 'zero':
      fields.push('Content-Length: 0')
      break
    default:
      fields.push(`Content-Length: ${cl.replaceAll('N', n)}`)
  }
  switch (te) {
    case undefined:
      return { fields, chunked: false }
    case 'dup':
      fields.push('Transfer-Encoding: chunked', 'Transfer-Encoding: chunked')
      break
    case 'name-space':
      fields.push('Transfer-Encoding : chunked')
      break
    case 'name-underscore':
      fields.push('Transfer_Encoding: chunked')
      break
    case 'folded':
      fields.push('X-Pad: 1', ' Transfer-Encoding: chunked')
      break
    default:
      fields.push(`Transfer-Encoding: ${te}`)
      return { fields, chunked: te.toLowerCase().includes('chunked') }
  }
  return { fields, chunked: true }
}

/** `parts` chunked (empty ones skipped), ended by the last chunk (with `trailer`, a header line) or, `bad`, by a malformed size. */
export function chunkedPayload(parts: string[], opts: { ext?: boolean; bad?: boolean; trailer?: string }): string {
  let payload = parts
    .filter((p) => p.length > 0)
    .map((p) => `${Buffer.byteLength(p).toString(16)}${opts.ext === true ? ';ext=1' : ''}\r\n${p}\r\n`)
    .join('')
  payload += opts.bad === true ? 'zz\r\n\r\n' : `0\r\n${opts.trailer === undefined ? '' : `${opts.trailer}\r\n`}\r\n`
  return payload
}

/** Requests numbered by their place (/p0, /p1, ...), joined, and cut at `cuts` (taken modulo the length) into writes. */
export function pipelineWrites(requests: string[], cuts: number[]): Buffer[] {
  const bytes = Buffer.from(requests.map((r, i) => r.replace('/p0 ', `/p${i} `)).join(''), 'latin1')
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const writes: Buffer[] = []
  let from = 0
  for (const p of [...points, bytes.length]) {
    if (p > from) writes.push(bytes.subarray(from, p))
    from = p
  }
  return writes
}

/** A client byte stream: pipelined requests, cut at random places into separate TCP writes. */
export const stream = fc
  .tuple(fc.array(request, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }))
  .map(([requests, cuts]) => pipelineWrites(requests, cuts))
