import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { describe, expect, it } from 'vitest'
import { responseHeaderList, stripResponseHeaders, upstreamHeaders, upstreamHeadersH2 } from '../../../src/proxy/headers.js'

/** A request as the listener sees it: raw header pairs, the parsed view Node builds, the client address. */
function request(raw: string[], remoteAddress = '192.0.2.7'): IncomingMessage {
  const headers: IncomingHttpHeaders = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const prev = headers[name]
    headers[name] = prev === undefined ? raw[i + 1]! : `${prev as string}, ${raw[i + 1]!}`
  }
  return { rawHeaders: raw, headers, socket: { remoteAddress } } as unknown as IncomingMessage
}

function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = []
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!])
  return out
}

describe('request headers sent upstream', () => {
  it('drops hop-by-hop headers and keeps end-to-end ones in order, Host as sent', () => {
    const out = upstreamHeaders(
      request([
        'Host',
        'shop.example:8080',
        'Connection',
        'keep-alive',
        'Keep-Alive',
        'timeout=5',
        'Proxy-Connection',
        'keep-alive',
        'TE',
        'trailers',
        'Trailer',
        'X-Checksum',
        'Transfer-Encoding',
        'chunked',
        'Upgrade',
        'h2c',
        'Expect',
        '100-continue',
        'Accept',
        'text/html',
        'X-User-Id',
        'u-1',
      ]),
      'http',
    )
    expect(pairs(out)).toEqual([
      ['Host', 'shop.example:8080'],
      ['Accept', 'text/html'],
      ['X-User-Id', 'u-1'],
      ['x-forwarded-for', '192.0.2.7'],
      ['x-forwarded-proto', 'http'],
      ['x-forwarded-host', 'shop.example:8080'],
    ])
  })

  it('drops the headers named in Connection, whatever their case or length', () => {
    const long = 'X-A-Very-Long-Header-Name-Beyond-Thirty-Two-Chars'
    const out = upstreamHeaders(
      request([
        'Host',
        'a',
        'Connection',
        'close, x-secret,  ' + long.toLowerCase(),
        'X-Secret',
        '1',
        long,
        '2',
        'X-Kept',
        '3',
      ]),
      'http',
    )
    expect(pairs(out).map(([n]) => n)).toEqual([
      'Host',
      'X-Kept',
      'x-forwarded-for',
      'x-forwarded-proto',
      'x-forwarded-host',
    ])
  })

  it('never drops Host, Content-Length or Transfer-Encoding because Connection names them', () => {
    const out = upstreamHeaders(
      request(['Host', 'shop.example', 'Connection', 'Host, content-length, X-Gone', 'Content-Length', '5', 'X-Gone', '1']),
      'http',
    )
    expect(pairs(out).slice(0, 2)).toEqual([
      ['Host', 'shop.example'],
      ['Content-Length', '5'],
    ])
  })

  it('appends the client address to every X-Forwarded-For the client sent', () => {
    const out = upstreamHeaders(
      request(
        ['Host', 'a', 'X-Forwarded-For', '203.0.113.1', 'x-forwarded-for', '198.51.100.2, 10.0.0.3'],
        '127.0.0.1',
      ),
      'http',
    )
    expect(pairs(out).filter(([n]) => n.toLowerCase() === 'x-forwarded-for')).toEqual([
      ['x-forwarded-for', '203.0.113.1, 198.51.100.2, 10.0.0.3, 127.0.0.1'],
    ])
  })

  it('replaces a client X-Forwarded-Proto and X-Forwarded-Host with its own', () => {
    const out = upstreamHeaders(
      request(['host', 'real.example', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'spoofed.example']),
      'http',
    )
    expect(pairs(out)).toEqual([
      ['host', 'real.example'],
      ['x-forwarded-for', '192.0.2.7'],
      ['x-forwarded-proto', 'http'],
      ['x-forwarded-host', 'real.example'],
    ])
  })

  it('sets no X-Forwarded-Host when the client sent no Host', () => {
    const out = upstreamHeaders(request(['Accept', '*/*']), 'https')
    expect(pairs(out)).toEqual([
      ['Accept', '*/*'],
      ['x-forwarded-for', '192.0.2.7'],
      ['x-forwarded-proto', 'https'],
    ])
  })
})

describe('response headers sent to the client', () => {
  it('drops hop-by-hop headers and those named in Connection', () => {
    const h: IncomingHttpHeaders = {
      connection: 'keep-alive, X-Internal',
      'keep-alive': 'timeout=5',
      'x-internal': 'secret',
      'proxy-connection': 'close',
      'transfer-encoding': 'chunked',
      te: 'trailers',
      trailer: 'x-sum',
      upgrade: 'h2c',
      'content-type': 'text/plain',
      'set-cookie': ['a=1', 'b=2'],
    }
    expect(stripResponseHeaders(h)).toEqual({ 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] })
  })

  it('reads a Connection header given as a list', () => {
    const h = { connection: ['close', 'x-a'], 'x-a': '1', 'x-b': '2' } as unknown as IncomingHttpHeaders
    expect(stripResponseHeaders(h)).toEqual({ 'x-b': '2' })
  })
})

describe('responseHeaderList', () => {
  it('keeps end-to-end headers in order, set-cookie as an array, and leaves hop-by-hop and Connection-named ones out', () => {
    const h = {
      'content-type': 'text/plain',
      connection: 'keep-alive, x-private',
      'keep-alive': 'timeout=5',
      'x-private': 'secret',
      'set-cookie': ['a=1', 'b=2'],
      'transfer-encoding': 'chunked',
      'x-b': '2',
    }
    expect(responseHeaderList(h)).toEqual(['content-type', 'text/plain', 'set-cookie', ['a=1', 'b=2'], 'x-b', '2'])
    // undici's object is left as it was (the mirror compares it).
    expect(h['keep-alive']).toBe('timeout=5')
  })
  it('a 204 drops Content-Length, a 304 keeps it; Connection cannot name Content-Length away', () => {
    const h = { 'content-length': '11', etag: '"v1"', connection: 'content-length' }
    expect(responseHeaderList(h, true)).toEqual(['etag', '"v1"'])
    expect(responseHeaderList(h)).toEqual(['content-length', '11', 'etag', '"v1"'])
  })
})

describe('request headers of an HTTP/2 request sent to an HTTP/1.1 upstream', () => {
  it('never forwards pseudo-headers, puts :authority first as Host, joins split cookies', () => {
    const out = upstreamHeadersH2(
      request([':method', 'GET', ':path', '/a', ':scheme', 'https', ':authority', 'api.example:8443', 'cookie', 'a=1', 'x-one', '1', 'cookie', 'b=2']),
      '192.0.2.9',
      'https',
    )
    expect(pairs(out)).toEqual([
      ['host', 'api.example:8443'],
      ['x-one', '1'],
      ['cookie', 'a=1; b=2'],
      ['x-forwarded-for', '192.0.2.9'],
      ['x-forwarded-proto', 'https'],
      ['x-forwarded-host', 'api.example:8443'],
    ])
  })

  it("keeps a client's own Host over :authority, and drops te and the request id the client sent", () => {
    const out = upstreamHeadersH2(
      request([':authority', 'a.example', 'host', 'b.example', 'te', 'trailers', 'x-request-id', 'theirs']),
      '192.0.2.9',
      'https',
      'x-request-id',
      'ours',
    )
    expect(pairs(out)).toEqual([
      ['host', 'b.example'],
      ['x-forwarded-for', '192.0.2.9'],
      ['x-forwarded-proto', 'https'],
      ['x-forwarded-host', 'b.example'],
      ['x-request-id', 'ours'],
    ])
  })
})
