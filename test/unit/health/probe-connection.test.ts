import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { pino } from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ProbeConnection } from '../../../src/health/probe-connection.js'
import { Prober } from '../../../src/health/prober.js'
import { Instance, Version } from '../../../src/routing/instance.js'

const log = pino({ level: 'silent' })

interface Upstream {
  url: string
  server: Server
  /** Connections accepted so far. */
  connections: number
  /** Probe requests seen so far. */
  probes: number
  sockets: Set<Socket>
}

type Handler = (req: IncomingMessage, res: ServerResponse, nthOnSocket: number) => void

/** A real loopback upstream; the handler also learns how many requests its socket carried before. */
async function upstream(handler: Handler): Promise<Upstream> {
  const perSocket = new WeakMap<Socket, number>()
  const u = { connections: 0, probes: 0, sockets: new Set<Socket>() } as Upstream
  u.server = createServer((req, res) => {
    req.resume()
    u.probes++
    const n = perSocket.get(req.socket) ?? 0
    perSocket.set(req.socket, n + 1)
    handler(req, res, n)
  })
  u.server.on('connection', (s: Socket) => {
    u.connections++
    u.sockets.add(s)
    s.on('close', () => u.sockets.delete(s))
  })
  await new Promise<void>((r) => u.server.listen(0, '127.0.0.1', r))
  u.url = `http://127.0.0.1:${(u.server.address() as AddressInfo).port}`
  return u
}

const ok: Handler = (_req, res) => {
  res.writeHead(200)
  res.end('ok')
}

describe('probe connections', () => {
  const cleanup: (() => void)[] = []
  afterEach(() => {
    for (const c of cleanup.splice(0)) c()
  })

  function connect(u: Upstream, timeoutMs = 300): ProbeConnection {
    const c = new ProbeConnection(u.url, { path: '/healthz', timeoutMs })
    cleanup.push(() => {
      c.close()
      u.server.closeAllConnections()
      u.server.close()
    })
    return c
  }

  /** An instance of `u` under a running prober; one probe result flips its health. */
  async function probed(u: Upstream, intervalMs: number, onChange: (i: Instance) => void = () => {}) {
    const inst = new Instance(u.url, new Version('blue', 0), false)
    const thresholds = { healthyThreshold: 1, unhealthyThreshold: 1 }
    const prober = new Prober({ path: '/healthz', intervalMs, timeoutMs: 300, ...thresholds }, log, onChange)
    cleanup.push(() => {
      prober.stop()
      u.server.closeAllConnections()
      u.server.close()
    })
    await prober.sync([inst])
    return inst
  }

  it('probes an instance over one kept-alive connection, interval after interval', async () => {
    const u = await upstream(ok)
    const inst = await probed(u, 40)
    await expect.poll(() => u.probes, { message: 'twenty probe intervals' }).toBeGreaterThanOrEqual(20)
    expect(inst.healthy).toBe(true)
    expect(u.connections).toBe(1)
  })

  it('an upstream that closes its idle kept-alive connection fails no probe', async () => {
    const u = await upstream(ok)
    const c = connect(u)
    for (let i = 0; i < 5; i++) {
      expect(await c.check()).toBe(true)
      // A graceful keep-alive close (FIN) between two probes.
      u.server.closeIdleConnections()
      await vi.waitFor(() => expect(u.sockets.size, 'closed').toBe(0))
    }
    expect(u.connections).toBe(5)
  })

  it('a kept-alive connection reset as the probe is written is retried once on a fresh one', async () => {
    // The upstream's keep-alive timeout racing the probe: the second request
    // on a connection finds it closed without an answer.
    const u = await upstream((req, res, n) => {
      if (n > 0) {
        req.socket.destroy()
        return
      }
      ok(req, res, n)
    })
    const c = connect(u)
    for (let i = 0; i < 5; i++) expect(await c.check()).toBe(true)
    // The first probe opened one; each later probe lost one and opened another.
    expect(u.connections).toBe(5)
    expect(u.probes).toBe(9)
  })

  it('a probe that the instance never answers on a reused connection fails within timeoutMs, without a retry', async () => {
    let hang = false
    const u = await upstream((req, res, n) => {
      if (!hang) ok(req, res, n)
    })
    const c = connect(u, 200)
    expect(await c.check()).toBe(true)
    hang = true
    const started = performance.now()
    expect(await c.check()).toBe(false)
    const took = performance.now() - started
    expect(took).toBeGreaterThanOrEqual(190)
    expect(took).toBeLessThan(390)
    expect(u.probes).toBe(2)
    // And it recovers over a fresh connection once the instance answers again.
    hang = false
    expect(await c.check()).toBe(true)
    expect(u.connections).toBe(2)
  })

  it('an instance that resets every fresh connection fails (a reset counts unless the connection was reused)', async () => {
    const u = await upstream((req) => req.socket.destroy())
    const c = connect(u)
    expect(await c.check()).toBe(false)
    expect(await c.check()).toBe(false)
    expect(u.probes).toBe(2)
  })

  it('a stopped instance fails its probes (refused), also right after a kept-alive success', async () => {
    const u = await upstream(ok)
    const c = connect(u)
    expect(await c.check()).toBe(true)
    u.server.close()
    u.server.closeAllConnections()
    expect(await c.check()).toBe(false)
    expect(await c.check()).toBe(false)
  })

  it('a non-2xx answer on a kept-alive connection fails without a retry', async () => {
    let status = 200
    const u = await upstream((_req, res) => {
      res.writeHead(status)
      res.end()
    })
    const c = connect(u)
    expect(await c.check()).toBe(true)
    status = 503
    expect(await c.check()).toBe(false)
    expect(u.probes).toBe(2)
    expect(u.connections).toBe(1)
  })

  it('health through the prober stays right when every kept-alive connection is reset on reuse', async () => {
    let mode: 'reset-reused' | 'down' = 'reset-reused'
    const u = await upstream((req, res, n) => {
      if (mode === 'down' || n > 0) {
        req.socket.destroy()
        return
      }
      ok(req, res, n)
    })
    const flips: boolean[] = []
    const inst = await probed(u, 30, (i) => flips.push(i.healthy))
    await expect.poll(() => u.connections, { message: 'ten probes on fresh connections' }).toBeGreaterThanOrEqual(10)
    // One failed probe would have flipped it (unhealthyThreshold 1).
    expect(flips).toEqual([true])
    mode = 'down'
    await expect.poll(() => inst.healthy, { message: 'unhealthy once every connection resets' }).toBe(false)
    expect(flips).toEqual([true, false])
  })
})
