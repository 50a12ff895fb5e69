import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Prober } from '../../../src/health/prober.js'
import { Instance, Version } from '../../../src/routing/instance.js'

const log = pino({ level: 'silent' })

interface HealthEndpoint {
  url: string
  /** Answer of the next probes: 200, 503, or 'hang'. */
  answer: 200 | 503 | 'hang'
  probes: number
  server: Server
}

async function healthEndpoint(): Promise<HealthEndpoint> {
  const h = { answer: 200, probes: 0 } as HealthEndpoint
  h.server = createServer((req, res) => {
    req.resume()
    h.probes++
    if (h.answer === 'hang') return
    res.writeHead(h.answer)
    res.end()
  })
  await new Promise<void>((r) => h.server.listen(0, '127.0.0.1', r))
  h.url = `http://127.0.0.1:${(h.server.address() as AddressInfo).port}`
  return h
}

const opts = { path: '/healthz', intervalMs: 60, timeoutMs: 250, healthyThreshold: 2, unhealthyThreshold: 2 }

describe('active health probes', () => {
  const cleanup: (() => void)[] = []
  afterEach(() => {
    for (const c of cleanup.splice(0)) c()
  })

  async function setup(n = 1, o = opts) {
    const v = new Version('blue', 0)
    const endpoints: HealthEndpoint[] = []
    for (let i = 0; i < n; i++) {
      const h = await healthEndpoint()
      endpoints.push(h)
      v.instances.push(new Instance(h.url, v, false))
    }
    const changes: string[] = []
    let clock = 1_000
    const prober = new Prober(
      o,
      log,
      (i) => changes.push(`${i.url} ${i.healthy}`),
      () => clock,
    )
    cleanup.push(() => {
      prober.stop()
      for (const h of endpoints) {
        h.server.closeAllConnections()
        h.server.close()
      }
    })
    return { v, endpoints, changes, prober, tick: (ms: number) => (clock += ms) }
  }

  it('one passing probe makes a never-probed instance healthy; the first round resolves after it', async () => {
    const { v, prober } = await setup(2)
    const [a, b] = v.instances as [Instance, Instance]
    expect(a.probed).toBe(false)
    await prober.sync(v.instances)
    await prober.firstRound
    expect([a.probed, a.healthy, b.probed, b.healthy]).toEqual([true, true, true, true])
  })

  it('a never-probed instance that fails its first probe is probed but stays unhealthy', async () => {
    const { v, endpoints, prober, changes } = await setup(1)
    endpoints[0]!.answer = 503
    await prober.sync(v.instances)
    const inst = v.instances[0]!
    expect([inst.probed, inst.healthy]).toEqual([true, false])
    expect(changes).toEqual([`${inst.url} false`])
  })

  it('flips only after unhealthyThreshold failures and healthyThreshold successes in a row', async () => {
    const { v, endpoints, prober } = await setup(1)
    const h = endpoints[0]!
    const inst = v.instances[0]!
    await prober.sync(v.instances)
    expect(inst.healthy).toBe(true)
    h.answer = 503
    const from = h.probes
    await expect.poll(() => inst.healthy, { message: 'unhealthy' }).toBe(false)
    // The probe that completed the streak is the second failing one (the next cannot have fired yet).
    expect(h.probes - from).toBe(2)
    h.answer = 200
    const back = h.probes
    await expect.poll(() => inst.healthy, { message: 'healthy again' }).toBeTruthy()
    expect(h.probes - back).toBe(2)
  })

  it('a probe that gets no answer within timeoutMs counts as a failure', async () => {
    const { v, endpoints, prober } = await setup(1)
    const inst = v.instances[0]!
    await prober.sync(v.instances)
    endpoints[0]!.answer = 'hang'
    await expect.poll(() => inst.healthy, { message: 'unhealthy after timeouts' }).toBe(false)
  })

  it('a refused connection counts as a failure', async () => {
    const { v, endpoints, prober } = await setup(1)
    const inst = v.instances[0]!
    await prober.sync(v.instances)
    endpoints[0]!.server.close()
    endpoints[0]!.server.closeAllConnections()
    await expect.poll(() => inst.healthy, { message: 'unhealthy after refusals' }).toBe(false)
  })

  it('the initial instances start at full share; added and recovered instances start slow start', async () => {
    const { v, endpoints, prober, tick } = await setup(1)
    const first = v.instances[0]!
    await prober.sync(v.instances)
    expect(first.usableSince).toBe(0)

    const added = await healthEndpoint()
    cleanup.push(() => added.server.close())
    const inst = new Instance(added.url, v, false)
    v.instances.push(inst)
    tick(500)
    await prober.sync(v.instances)
    expect(inst.healthy).toBe(true)
    expect(inst.usableSince).toBe(1_500)

    endpoints[0]!.answer = 503
    await expect.poll(() => first.healthy, { message: 'unhealthy' }).toBe(false)
    tick(500)
    endpoints[0]!.answer = 200
    await expect.poll(() => first.healthy, { message: 'recovered' }).toBeTruthy()
    expect(first.usableSince).toBe(2_000)
  })

  it('an instance no longer listed is no longer probed; stop() ends all probing', async () => {
    const { v, endpoints, prober } = await setup(2)
    await prober.sync(v.instances)
    await prober.sync([v.instances[0]!])
    const dropped = endpoints[1]!.probes
    const kept = endpoints[0]!.probes
    await expect
      .poll(() => endpoints[0]!.probes, { message: 'more probes of the kept instance' })
      .toBeGreaterThanOrEqual(kept + 3)
    expect(endpoints[1]!.probes).toBe(dropped)
    prober.stop()
    const atStop = endpoints[0]!.probes
    await new Promise((r) => setTimeout(r, 150))
    expect(endpoints[0]!.probes).toBe(atStop)
  })

  it('probes of many instances are spread over the interval, not fired together', async () => {
    const { v, endpoints, prober } = await setup(6, { ...opts, intervalMs: 200, timeoutMs: 100 })
    await prober.sync(v.instances)
    const times: number[] = []
    for (const h of endpoints) h.server.on('request', () => times.push(performance.now()))
    await expect
      .poll(() => times.length, { message: 'three rounds of probes', timeout: 10_000 })
      .toBeGreaterThanOrEqual(18)
    // With +-10% jitter per instance the phases drift apart: not every round is one burst.
    times.sort((a, b) => a - b)
    const gaps = times.slice(1).map((t, i) => t - times[i]!)
    expect(gaps.some((g) => g > 2)).toBe(true)
  })
})
