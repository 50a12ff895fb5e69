import { performance } from 'node:perf_hooks'
import { DenseSet, type Slotted } from './dense-set.js'

/** Something with deadlines of its own; `check` acts on those that passed and unwatches itself when none is left. */
export interface Watched extends Slotted {
  check(now: number): void
}

/**
 * The request deadlines undici's per-try timers cannot express: the whole
 * wait for a response head across retries and in the pool's queue, and the
 * whole request body (README "Limits and timeouts"). One unref'd timer
 * sweeps the exchanges in flight every `everyMs`, so a request pays an O(1)
 * add and remove in a dense array, never a timer or closure of its own; a
 * deadline is acted on at most `everyMs` late.
 */
export class Deadlines {
  readonly #watched = new DenseSet<Watched>()
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  constructor(readonly everyMs: number) {}

  watch(item: Watched): void {
    this.#watched.add(item)
    if (this.#timer === undefined && !this.#stopped) {
      this.#timer = setInterval(() => this.sweep(performance.now()), this.everyMs)
      this.#timer.unref()
    }
  }

  unwatch(item: Watched): void {
    this.#watched.delete(item)
  }

  get size(): number {
    return this.#watched.size
  }

  sweep(now: number): void {
    this.#watched.forEach((item) => item.check(now))
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }
}

/** How often to sweep: a tenth of the shortest deadline, between 10 and 250 ms. */
export function sweepEveryMs(...deadlinesMs: number[]): number {
  return Math.max(10, Math.min(250, Math.floor(Math.min(...deadlinesMs) / 10)))
}
