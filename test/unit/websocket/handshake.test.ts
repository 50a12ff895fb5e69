import type { IncomingMessage } from 'node:http'
import { describe, expect, it } from 'vitest'
import {
  handshakeProblem,
  offeredProtocols,
  passedUpgradeHeaders,
  relayHeaders,
  relayHeadersFrom,
  tunnelHeaders,
} from '../../../src/websocket/handshake.js'

/** Just enough of an IncomingMessage for the header rules. */
function upgrade(raw: string[], method = 'GET'): IncomingMessage {
  const headers: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    headers[name] = headers[name] === undefined ? raw[i + 1]! : `${headers[name]}, ${raw[i + 1]}`
  }
  return { method, url: '/chat', rawHeaders: raw, headers, socket: { remoteAddress: '10.1.2.3' } } as never
}

const HANDSHAKE = [
  'Host',
  'app.example',
  'Connection',
  'Upgrade',
  'Upgrade',
  'websocket',
  'Sec-WebSocket-Key',
  'dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version',
  '13',
  'Sec-WebSocket-Protocol',
  'chat.v1, chat.v2',
  'Sec-WebSocket-Extensions',
  'permessage-deflate; client_max_window_bits',
  'Cookie',
  'a=1',
  'Cookie',
  'b=2',
  'X-Forwarded-For',
  '192.0.2.9',
]

describe('the WebSocket opening handshake', () => {
  it('accepts a well-formed handshake', () => {
    expect(handshakeProblem(upgrade(HANDSHAKE))).toBeUndefined()
  })

  it('rejects other upgrades, other methods, bad keys and versions with a stable code', () => {
    const h2c = upgrade(['Upgrade', 'h2c'])
    expect(handshakeProblem(h2c)?.status).toBe(400)
    expect(handshakeProblem(h2c)?.code).toBe('SLUICE_BAD_WEBSOCKET_HANDSHAKE')
    expect(handshakeProblem(upgrade(HANDSHAKE, 'POST'))?.status).toBe(405)
    const badKey = HANDSHAKE.map((v) => (v === 'dGhlIHNhbXBsZSBub25jZQ==' ? 'short' : v))
    expect(handshakeProblem(upgrade(badKey))?.status).toBe(400)
    const v12 = HANDSHAKE.map((v, i) => (HANDSHAKE[i - 1] === 'Sec-WebSocket-Version' ? '12' : v))
    expect(handshakeProblem(upgrade(v12))?.status).toBe(426)
  })

  it('reads the offered subprotocols in order', () => {
    expect(offeredProtocols(upgrade(HANDSHAKE))).toEqual(['chat.v1', 'chat.v2'])
    expect(offeredProtocols(upgrade([]))).toEqual([])
  })

  it('relays the header rules but leaves every per-side Sec-WebSocket-* field to the proxy', () => {
    const h = relayHeaders(upgrade(HANDSHAKE), 'http')
    expect(h).toEqual({
      host: 'app.example',
      cookie: 'a=1; b=2',
      'x-forwarded-for': '192.0.2.9, 10.1.2.3',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'app.example',
    })
  })

  it("gives a handoff's upstream the same headers from the parsed headers a session keeps", () => {
    const req = upgrade([...HANDSHAKE, 'X-Request-Id', 'from-client', 'Keep-Alive', 'timeout=5'])
    // As node parses them: Cookie joined with '; '.
    const parsed = { ...req.headers, cookie: 'a=1; b=2' }
    const first = relayHeaders(req, 'https', 'x-request-id', 'id-1')
    expect(relayHeadersFrom(parsed, '10.1.2.3', 'https', 'x-request-id', 'id-1')).toEqual(first)
    expect(first['x-request-id']).toBe('id-1')
    expect(first['keep-alive']).toBeUndefined()
  })

  it('tunnels the whole handshake, with the forwarding headers added', () => {
    const flat = tunnelHeaders(upgrade(HANDSHAKE), 'http')
    const names = flat.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
    expect(names).toContain('sec-websocket-key')
    expect(names).toContain('sec-websocket-extensions')
    expect(names).toContain('sec-websocket-protocol')
    expect(flat.slice(-4)).toEqual(['Connection', 'Upgrade', 'Upgrade', 'websocket'])
    expect(flat[flat.indexOf('x-forwarded-for') + 1]).toBe('192.0.2.9, 10.1.2.3')
  })

  it("passes the upstream's 101 headers except its own negotiation", () => {
    const res = {
      rawHeaders: [
        'Upgrade',
        'websocket',
        'Connection',
        'Upgrade',
        'Sec-WebSocket-Accept',
        'x',
        'Sec-WebSocket-Extensions',
        'permessage-deflate',
        'Set-Cookie',
        'sid=1',
        'X-Served-By',
        'a',
      ],
    } as IncomingMessage
    expect(passedUpgradeHeaders(res)).toEqual(['Set-Cookie: sid=1', 'X-Served-By: a'])
  })
})
