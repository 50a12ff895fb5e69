import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { LeaderLease } from '../../../src/state/lease.js'

/** A lease table like the Redis one (key with expiry, fencing counter), on a fake clock. */
function fakeRedis() {
  const clock = { t: 0 }
  let holder: { owner: string; token: number; expires: number } | undefined
  let fence = 0
  let reachable = true
  const lease = (owner: string, leaseMs: number) => {
    const l = new LeaderLease({
      leaseMs,
      log: pino({ level: 'silent' }),
      now: () => clock.t,
      acquire: async () => {
        if (!reachable) throw new Error('unreachable')
        if (holder && holder.expires <= clock.t) holder = undefined
        if (holder && holder.owner !== owner) return 0
        if (holder) {
          holder.expires = clock.t + leaseMs
          return holder.token
        }
        holder = { owner, token: ++fence, expires: clock.t + leaseMs }
        return holder.token
      },
      release: async () => {
        if (holder?.owner === owner) holder = undefined
      },
    })
    return l
  }
  return {
    clock,
    lease,
    setReachable(r: boolean) {
      reachable = r
    },
  }
}

describe('the leader lease', () => {
  it('one of several proxies leads, with a fencing token', async () => {
    const r = fakeRedis()
    const a = r.lease('a', 2000)
    const b = r.lease('b', 2000)
    await a.tick()
    await b.tick()
    expect([a.leader, b.leader]).toEqual([true, false])
    expect(a.token).toBe(1)
    expect(b.token).toBe(0)
  })

  it('when the leader stops renewing (dies), another leads within two lease periods', async () => {
    const r = fakeRedis()
    const a = r.lease('a', 2000)
    const b = r.lease('b', 2000)
    const changes: boolean[] = []
    b.onChange((l) => changes.push(l))
    await a.tick()
    await b.tick()
    await a.stop(false) // dies: no release
    let waited = 0
    while (!b.leader && waited < 4000) {
      r.clock.t += 2000 / 3
      waited += 2000 / 3
      await b.tick()
    }
    expect(b.leader).toBe(true)
    expect(waited).toBeLessThan(2 * 2000)
    expect(b.token).toBe(2)
    expect(changes).toEqual([true])
  })

  it('a leader that cannot reach the store stops leading when its lease runs out, before anyone else can lead', async () => {
    const r = fakeRedis()
    const a = r.lease('a', 2000)
    const changes: boolean[] = []
    a.onChange((l) => changes.push(l))
    await a.tick()
    r.setReachable(false)
    r.clock.t += 1999
    await a.tick()
    expect(a.leader).toBe(true)
    r.clock.t += 1
    expect(a.leader).toBe(false)
    await a.tick()
    expect(changes).toEqual([true, false])
  })

  it('a graceful stop releases the lease so another leads at its next try', async () => {
    const r = fakeRedis()
    const a = r.lease('a', 2000)
    const b = r.lease('b', 2000)
    await a.tick()
    await a.stop()
    expect(a.leader).toBe(false)
    await b.tick()
    expect(b.leader).toBe(true)
  })

  it('renewals keep the same token', async () => {
    const r = fakeRedis()
    const a = r.lease('a', 2000)
    for (let i = 0; i < 10; i++) {
      await a.tick()
      r.clock.t += 600
    }
    expect(a.token).toBe(1)
    expect(a.leader).toBe(true)
  })
})
