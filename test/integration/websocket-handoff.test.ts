import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocket } from 'ws'
import { admin, startProxy, type TestProxy } from '../helpers/proxy.js'
import { nextMessage, openClient, startWsUpstream, type WsUpstream, whenClosed, wsUrl } from '../helpers/ws-upstream.js'

/** Answers {"n":N} with {"n":N,"by":NAME}: who answered which message. */
function numbered(ws: WebSocket, _req: unknown, u: { name: string }): void {
  ws.on('message', (data) => {
    const { n } = JSON.parse(String(data)) as { n: number }
    ws.send(JSON.stringify({ n, by: u.name }))
  })
}

interface Reply {
  n: number
  by: string
}

/**
 * A client that sends numbered messages at a steady rate and records every
 * reply; `closed` says whether the proxy ever closed it.
 */
function steadySender(ws: WebSocket, count: number, everyMs: number) {
  const replies: Reply[] = []
  const sentAt: number[] = []
  const answeredAt: number[] = []
  let closed: number | undefined
  ws.on('message', (d) => {
    replies.push(JSON.parse(String(d)) as Reply)
    answeredAt.push(performance.now())
  })
  ws.on('close', (code) => {
    closed = code
  })
  let n = 0
  const done = new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (n >= count || closed !== undefined) {
        clearInterval(timer)
        resolve()
        return
      }
      sentAt.push(performance.now())
      ws.send(JSON.stringify({ n: n++ }))
    }, everyMs)
  })
  return {
    replies,
    sentAt,
    answeredAt,
    done,
    get sent() {
      return n
    },
    get closed() {
      return closed
    },
  }
}

describe('WebSocket handoff when the instance under a connection drains', () => {
  let a: WsUpstream
  let b: WsUpstream
  let c: WsUpstream
  let proxy: TestProxy

  beforeAll(async () => {
    a = await startWsUpstream('blue-a', { onConnection: numbered })
    b = await startWsUpstream('blue-b', { onConnection: numbered })
    c = await startWsUpstream('green-c', { onConnection: numbered })
    proxy = await startProxy({
      versions: {
        blue: { instances: [{ url: a.url }, { url: b.url }] },
        green: { instances: [{ url: c.url }] },
      },
      weights: { blue: 100 },
      sticky: { keys: ['header:x-user-id'] },
      websocket: { onDrain: 'handoff', handoffTimeoutMs: 3000 },
    })
  })
  afterAll(async () => {
    await proxy.stop()
    await Promise.all([a.close(), b.close(), c.close()])
  })

  it('answers every message exactly once, in order, by an instance that is not draining, without closing the client', async () => {
    const byName = { 'blue-a': a, 'blue-b': b, 'green-c': c } as Record<string, WsUpstream>
    let worstSwitchMs = 0
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('instance', 'version', 'weights'),
        fc.integer({ min: 5, max: 60 }),
        fc.string({ minLength: 1, maxLength: 12 }).filter((s) => /^[\x21-\x7e]+$/.test(s)),
        async (how, drainAfter, user) => {
          const ws = await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-user-id': user } })
          const count = 120
          const s = steadySender(ws, count, 4)
          await expect
            .poll(() => s.replies.length, { message: 'replies before the drain' })
            .toBeGreaterThanOrEqual(drainAfter)
          const first = s.replies[0]!.by
          const handoffsBefore = await handoffs(proxy)
          // Drain what is under the connection, three ways.
          let left: string[]
          if (how === 'instance') {
            left = [first]
            expect((await admin(proxy, 'POST', '/v1/drain', { url: byName[first]!.url })).status).toBe(200)
          } else if (how === 'version') {
            left = first === 'green-c' ? ['green-c'] : ['blue-a', 'blue-b']
            const version = first === 'green-c' ? 'green' : 'blue'
            expect((await admin(proxy, 'POST', '/v1/drain', { version })).status).toBe(200)
          } else {
            left = first === 'green-c' ? ['green-c'] : ['blue-a', 'blue-b']
            const weights = first === 'green-c' ? { blue: 100, green: 0 } : { blue: 0, green: 100 }
            expect((await admin(proxy, 'PUT', '/v1/weights', weights)).status).toBe(200)
          }
          const firstAfter = s.sent
          await s.done
          await expect
            .poll(() => s.replies.length >= count || s.closed !== undefined, {
              message: 'every reply',
              timeout: 15_000,
            })
            .toBeTruthy()
          // Exactly once, in order.
          expect(s.closed).toBeUndefined()
          expect(s.replies.map((r) => r.n)).toEqual(Array.from({ length: count }, (_, i) => i))
          // Sent after the drain answered: answered elsewhere.
          for (const r of s.replies.slice(firstAfter)) expect(left).not.toContain(r.by)
          // The longest a message waited for its answer around the switch: held messages wait for the new upstream.
          for (let i = Math.max(0, firstAfter - 20); i < count; i++)
            worstSwitchMs = Math.max(worstSwitchMs, s.answeredAt[i]! - s.sentAt[i]!)
          expect(await handoffs(proxy)).toBe(handoffsBefore + 1)
          ws.close()
          await whenClosed(ws)
          // Put everything back for the next run.
          await admin(proxy, 'POST', '/v1/undrain', { url: a.url })
          await admin(proxy, 'POST', '/v1/undrain', { url: b.url })
          await admin(proxy, 'POST', '/v1/undrain', { version: 'blue' })
          await admin(proxy, 'POST', '/v1/undrain', { version: 'green' })
          await admin(proxy, 'PUT', '/v1/weights', { blue: 100 })
        },
      ),
      { numRuns: 10, endOnFailure: true },
    )
    // The promise is within one second; generous here, the machine is shared.
    if (process.env.SLUICE_TEST_REPORT)
      console.log(`longest wait for an answer around a handoff: ${worstSwitchMs.toFixed(1)} ms`)
    expect(worstSwitchMs).toBeLessThan(5000)
  })

  it('closes the old upstream with 1001 once switched', async () => {
    const ws = await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-user-id': 'one-thousand-one' } })
    const s = steadySender(ws, 30, 5)
    await expect.poll(() => s.replies.length, { message: 'a reply' }).toBeGreaterThan(0)
    const under = s.replies[0]!.by === 'blue-a' ? a : b
    const other = under === a ? b : a
    const first = under.upgrades.at(-1)!.headers
    const otherUpgrades = other.upgrades.length
    const serverSide = [...under.clients].at(-1)!
    const oldClosed = whenClosed(serverSide)
    await admin(proxy, 'POST', '/v1/drain', { url: under.url })
    expect((await oldClosed).code).toBe(1001)
    await s.done
    await expect.poll(() => s.replies.length, { message: 'every reply' }).toBe(30)
    expect(s.closed).toBeUndefined()
    // The new upstream's handshake carries what the first one did: the client's headers, its address, the request ID.
    const again = other.upgrades.slice(otherUpgrades).at(-1)!.headers
    for (const name of ['x-user-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'host'])
      expect(again[name], name).toBe(first[name])
    expect(first['x-request-id']).toMatch(/./)
    expect(first['x-forwarded-for']).toMatch(/127\.0\.0\.1/)
    ws.close()
    await admin(proxy, 'POST', '/v1/undrain', { url: under.url })
  })
})

/** Replies strictly in order, none twice, and at most a couple lost (those in flight to an upstream as it closed). */
function expectAnsweredInOrder(replies: Reply[], sent: number): void {
  const ns = replies.map((r) => r.n)
  for (let i = 1; i < ns.length; i++) expect(ns[i]!).toBeGreaterThan(ns[i - 1]!)
  expect(ns.length).toBeGreaterThanOrEqual(sent - 3)
}

describe('WebSocket handoff when the upstream itself goes away', () => {
  it('an upstream closing with 1012 or 1001 hands the client to another instance; other codes reach the client', async () => {
    const a = await startWsUpstream('blue-a', { onConnection: numbered })
    const b = await startWsUpstream('blue-b', { onConnection: numbered })
    const proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }, { url: b.url }] } },
      sticky: { keys: ['header:x-user-id'] },
      websocket: { onDrain: 'handoff', handoffTimeoutMs: 3000 },
    })
    try {
      for (const code of [1012, 1001]) {
        const ws = await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-user-id': `restart-${code}` } })
        const s = steadySender(ws, 40, 5)
        await expect.poll(() => s.replies.length, { message: 'some replies' }).toBeGreaterThan(5)
        const under = s.replies[0]!.by === 'blue-a' ? a : b
        // The application restarts under this connection.
        ;[...under.clients].at(-1)!.close(code, 'restarting')
        await s.done
        // Whatever was on the wire to the old upstream when it closed is lost with it; the rest is answered.
        await expect.poll(() => s.replies.at(-1)?.n, { message: 'the last reply' }).toBe(39)
        expectAnsweredInOrder(s.replies, 40)
        expect(s.closed).toBeUndefined()
        const other = under === a ? 'blue-b' : 'blue-a'
        expect(s.replies.at(-1)!.by).toBe(other)
        ws.close()
      }
      // An application that ends the conversation itself: the client hears it as it was.
      const ws = await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-user-id': 'ended' } })
      const closed = whenClosed(ws)
      await expect.poll(() => a.clients.size + b.clients.size, { message: 'the upstream side' }).toBeGreaterThan(0)
      for (const u of [a, b]) for (const c of u.clients) if (c.readyState === 1) c.close(4000, 'bye')
      expect(await closed).toEqual({ code: 4000, reason: 'bye' })
    } finally {
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })

  it('with one instance, a client whose upstream restarts is connected to it again', async () => {
    const a = await startWsUpstream('solo', { onConnection: numbered })
    const proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }] } },
      websocket: { onDrain: 'handoff', handoffTimeoutMs: 3000 },
    })
    try {
      const ws = await openClient(wsUrl(proxy.url))
      const s = steadySender(ws, 40, 5)
      await expect.poll(() => s.replies.length, { message: 'some replies' }).toBeGreaterThan(5)
      ;[...a.clients].at(-1)!.close(1012, 'restarting')
      await s.done
      await expect.poll(() => s.replies.at(-1)?.n, { message: 'the last reply' }).toBe(39)
      expectAnsweredInOrder(s.replies, 40)
      expect(s.closed).toBeUndefined()
      expect(a.clients.size).toBeGreaterThan(0)
      ws.close()
    } finally {
      await proxy.stop()
      await a.close()
    }
  })
})

describe('WebSockets on an instance that fails its probes', () => {
  it('stay where they are (relay and tunnel); new upgrades go to a healthy instance', async () => {
    for (const mode of ['relay', 'tunnel'] as const) {
      const a = await startWsUpstream('blue-a', { onConnection: numbered })
      const b = await startWsUpstream('blue-b', { onConnection: numbered })
      const proxy = await startProxy({
        versions: { blue: { instances: [{ url: a.url }, { url: b.url }] } },
        sticky: { keys: ['header:x-user-id'] },
        health: { path: '/healthz', intervalMs: 100, timeoutMs: 100, unhealthyThreshold: 1, healthyThreshold: 1 },
        websocket: { mode, onDrain: 'handoff' },
      })
      const healthy = async (url: string) =>
        (await admin(proxy, 'GET', '/v1/state')).body.versions.blue.instances.find(
          (i: { url: string; healthy: boolean }) => i.url === url,
        ).healthy as boolean
      try {
        await expect
          .poll(async () => (await healthy(a.url)) && (await healthy(b.url)), { message: 'both probed healthy' })
          .toBeTruthy()
        const ws = await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-user-id': `probe-${mode}` } })
        const s = steadySender(ws, 60, 10)
        await expect.poll(() => s.replies.length, { message: 'some replies' }).toBeGreaterThan(3)
        const under = s.replies[0]!.by === 'blue-a' ? a : b
        const other = under === a ? b : a
        under.healthy = false
        await expect
          .poll(async () => (await healthy(under.url)), { message: 'the instance marked unhealthy' })
          .toBe(false)
        // A new connection for the same user goes to the healthy instance.
        const fresh = await openClient(wsUrl(proxy.url), undefined, { headers: { 'x-user-id': `probe-${mode}` } })
        fresh.send(JSON.stringify({ n: 0 }))
        expect(JSON.parse(String((await nextMessage(fresh)).data)).by).toBe(other.name)
        fresh.close()
        await s.done
        await expect.poll(() => s.replies.length, { message: 'every reply' }).toBe(60)
        // The open one was never moved or closed.
        expect(s.closed).toBeUndefined()
        expect(new Set(s.replies.map((r) => r.by))).toEqual(new Set([under.name]))
        ws.close()
      } finally {
        await proxy.stop()
        await a.close()
        await b.close()
      }
    }
  })
})

describe('WebSockets when a handoff is impossible or not wanted', () => {
  it('closes the client with 1012 when onDrain is close', async () => {
    const a = await startWsUpstream('a')
    const b = await startWsUpstream('b')
    const proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }, { url: b.url }] } },
      websocket: { onDrain: 'close' },
    })
    try {
      const ws = await openClient(wsUrl(proxy.url))
      const closed = whenClosed(ws)
      await expect.poll(() => a.clients.size + b.clients.size, { message: 'the upstream side' }).toBe(1)
      const under = a.clients.size === 1 ? a : b
      await admin(proxy, 'POST', '/v1/drain', { url: under.url })
      expect((await closed).code).toBe(1012)
    } finally {
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })

  it('closes the client with 1012 when no new upstream is reached within handoffTimeoutMs', async () => {
    const a = await startWsUpstream('a')
    const proxy = await startProxy({
      versions: { blue: { instances: [{ url: a.url }] } },
      websocket: { onDrain: 'handoff', handoffTimeoutMs: 300 },
    })
    try {
      const ws = await openClient(wsUrl(proxy.url))
      const closed = whenClosed(ws)
      await admin(proxy, 'POST', '/v1/drain', { version: 'blue' })
      expect(await closed).toEqual({ code: 1012, reason: 'handoff failed' })
    } finally {
      await proxy.stop()
      await a.close()
    }
  })

  it('sends 1001 to every WebSocket client on a graceful stop, relayed and tunnelled', async () => {
    for (const mode of ['relay', 'tunnel'] as const) {
      const a = await startWsUpstream('a')
      const proxy = await startProxy({ versions: { blue: { instances: [{ url: a.url }] } }, websocket: { mode } })
      const clients = await Promise.all([1, 2, 3].map(() => openClient(wsUrl(proxy.url))))
      const closed = clients.map(whenClosed)
      const upstreamClosed = [...a.clients].map(whenClosed)
      await proxy.stop()
      for (const c of await Promise.all(closed)) expect(c, mode).toEqual({ code: 1001, reason: 'proxy stopping' })
      for (const c of await Promise.all(upstreamClosed)) expect(c.code, mode).toBe(1001)
      await a.close()
    }
  })
})

async function handoffs(p: TestProxy): Promise<number> {
  const text = await (await fetch(`${p.adminUrl}/metrics`)).text()
  let sum = 0
  for (const m of text.matchAll(/^sluice_websocket_handoffs_total\{[^}]*\} (\d+)/gm)) sum += Number(m[1])
  return sum
}
