import type { Logger } from 'pino'

export interface LeaseOptions {
  /** How long a lease lasts without renewal. */
  leaseMs: number
  /**
   * Takes or extends the lease in one atomic step (see `sluiceLease` in
   * redis-scripts.ts); answers the fencing token, or 0 when another holder
   * has it. Rejects when the store is unreachable.
   */
  acquire: () => Promise<number>
  /** Frees the lease if this process holds it. */
  release: () => Promise<void>
  log: Logger
  now?: () => number
}

/**
 * A leader lease: one process at a time holds it and drives the rollout.
 * The holder renews it every third of the lease; everyone else tries to
 * take it just as often, so a holder that dies (or loses the store) is
 * replaced within lease + lease/3, under two lease periods. The holder
 * counts its lease from when it *sent* the renewal, so it always believes
 * it is leader for less time than the store keeps its key: two holders are
 * never leader at once, as long as clocks run at the same rate (and after
 * the store loses its data, nobody may take the lease for one lease period:
 * see `sluiceLease`). Each new holder gets a larger fencing token (a counter
 * increased at acquisition).
 */
export class LeaderLease {
  readonly #opts: LeaseOptions
  readonly #now: () => number
  readonly #listeners: ((leader: boolean) => void)[] = []
  #token = 0
  #validUntil = 0
  #reported = false
  #timer: NodeJS.Timeout | undefined
  #running = false
  #ticking: Promise<void> | undefined

  constructor(opts: LeaseOptions) {
    this.#opts = opts
    this.#now = opts.now ?? Date.now
  }

  get leader(): boolean {
    return this.#token > 0 && this.#now() < this.#validUntil
  }

  /** The fencing token of the current holding, 0 when not leader. */
  get token(): number {
    return this.leader ? this.#token : 0
  }

  onChange(listener: (leader: boolean) => void): void {
    this.#listeners.push(listener)
  }

  /** Tries at once, then every lease/3 until `stop`. */
  start(): void {
    if (this.#running) return
    this.#running = true
    this.#schedule(0)
  }

  /** One attempt to take or renew the lease; reports a change of leadership. */
  tick(): Promise<void> {
    this.#ticking ??= this.#attempt().finally(() => {
      this.#ticking = undefined
    })
    return this.#ticking
  }

  async #attempt(): Promise<void> {
    const sentAt = this.#now()
    try {
      const token = await this.#opts.acquire()
      if (token > 0) {
        if (token !== this.#token && this.#token > 0)
          this.#opts.log.warn({ token, previous: this.#token }, 'leader lease was lost and taken again')
        this.#token = token
        this.#validUntil = sentAt + this.#opts.leaseMs
      } else {
        this.#token = 0
      }
    } catch (err) {
      // Unreachable: keep what we have until it runs out, then stop leading.
      this.#opts.log.debug({ err }, 'leader lease attempt failed')
    }
    this.#report()
  }

  #report(): void {
    const leader = this.leader
    if (leader === this.#reported) return
    this.#reported = leader
    this.#opts.log.info(
      { leader, token: this.#token },
      leader ? 'leading the rollout' : 'no longer leading the rollout',
    )
    for (const l of this.#listeners) {
      try {
        l(leader)
      } catch (err) {
        this.#opts.log.error({ err }, 'leadership listener failed')
      }
    }
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      void this.tick().then(() => {
        if (this.#running) this.#schedule(Math.max(1, Math.floor(this.#opts.leaseMs / 3)))
      })
    }, ms)
    this.#timer.unref()
  }

  /** Stops renewing; with `release`, frees the lease at once so another proxy takes over without waiting. */
  async stop(release = true): Promise<void> {
    this.#running = false
    clearTimeout(this.#timer)
    await this.#ticking
    const held = this.leader
    this.#token = 0
    this.#validUntil = 0
    this.#report()
    if (held && release) {
      try {
        await this.#opts.release()
      } catch (err) {
        this.#opts.log.debug({ err }, 'leader lease release failed: it expires by itself')
      }
    }
  }
}
