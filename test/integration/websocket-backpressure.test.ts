import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocket } from 'ws'
import { startProxy, type TestProxy } from '../helpers/proxy.js'
import { gatewayOf, sampleMax } from '../helpers/ws-gateway.js'
import { openClient, startWsUpstream, type WsUpstream, wsUrl } from '../helpers/ws-upstream.js'

const CHUNK = 64 * 1024
/** What a flooding side keeps in its own send buffer: it never buffers without bound itself. */
const OWN_BUFFER = 4 * 1024 * 1024
const FLOOD_MS = 1500
/** Far above loopback socket buffers plus the proxy's high-water marks; far below an unbounded flood. */
const BOUND = 64 * 1024 * 1024
/** The proxy's own buffers: the 1 MiB high-water mark plus one socket read or message beyond it, with room. */
const PROXY_BOUND = 4 * 1024 * 1024

/**
 * Sends numbered 64 KiB binary messages as fast as `ws` takes them (its own
 * buffer capped), for `ms`, then a final text "end". Resolves with how many
 * it sent and how many bytes left its buffer for the network.
 */
function flood(ws: WebSocket, ms: number): Promise<{ count: number; flushed: number }> {
  return new Promise((resolve) => {
    const until = performance.now() + ms
    let count = 0
    const step = () => {
      while (ws.bufferedAmount < OWN_BUFFER && performance.now() < until) {
        const m = Buffer.alloc(CHUNK)
        m.writeUInt32BE(count++, 0)
        ws.send(m)
      }
      if (performance.now() < until) {
        setTimeout(step, 5)
        return
      }
      const flushed = count * CHUNK - ws.bufferedAmount
      ws.send('end')
      resolve({ count, flushed })
    }
    step()
  })
}

/** Counts numbered messages in order until "end"; rejects on a gap. */
function drainAll(ws: WebSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    let next = 0
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return resolve(next)
      const n = (data as Buffer).readUInt32BE(0)
      if (n !== next) reject(new Error(`message ${n} arrived, expected ${next}`))
      next++
    })
  })
}

describe.each(['relay', 'tunnel'] as const)('backpressure through the proxy (%s mode)', (mode) => {
  let up: WsUpstream
  let proxy: TestProxy
  let upstreamFlood: Promise<{ count: number; flushed: number }> | undefined
  let upstreamSide: WebSocket | undefined

  beforeAll(async () => {
    up = await startWsUpstream('flood', {
      onConnection(ws, req) {
        upstreamSide = ws
        if (req.url === '/flood') upstreamFlood = flood(ws, FLOOD_MS)
      },
    })
    proxy = await startProxy({ versions: { blue: { instances: [{ url: up.url }] } }, websocket: { mode } })
  })
  afterAll(async () => {
    await proxy.stop()
    await up.close()
  })

  it('stops reading a flooding upstream while the client does not read, then delivers everything in order', async () => {
    const ws = await openClient(wsUrl(proxy.url, '/flood'))
    ws.pause()
    const before = process.memoryUsage().arrayBuffers
    const held = sampleMax(() => gatewayOf(proxy).buffered)
    await expect.poll(() => upstreamFlood, { message: 'the flood to start' }).toBeTruthy()
    await new Promise((r) => setTimeout(r, FLOOD_MS / 2))
    const midway = process.memoryUsage().arrayBuffers
    const { count, flushed } = await upstreamFlood!
    const after = process.memoryUsage().arrayBuffers
    // Unbounded, a loopback flood moves hundreds of MiB in this time.
    expect(held.stop()).toBeLessThan(PROXY_BOUND)
    expect(flushed).toBeLessThan(BOUND)
    expect(after - before).toBeLessThan(BOUND)
    expect(after - midway).toBeLessThan(BOUND / 2)
    const received = drainAll(ws)
    ws.resume()
    expect(await received).toBe(count)
    ws.close()
  })

  it('stops reading a flooding client while the upstream does not read', async () => {
    upstreamSide = undefined
    const ws = await openClient(wsUrl(proxy.url, '/slow'))
    await expect.poll(() => upstreamSide, { message: 'the upstream side' }).toBeTruthy()
    const server = upstreamSide!
    server.pause()
    const held = sampleMax(() => gatewayOf(proxy).buffered)
    const { count, flushed } = await flood(ws, FLOOD_MS)
    expect(held.stop()).toBeLessThan(PROXY_BOUND)
    expect(flushed).toBeLessThan(BOUND)
    const received = drainAll(server)
    server.resume()
    expect(await received).toBe(count)
    ws.close()
  })
})
