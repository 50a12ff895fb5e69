/** One shadow answer that differed from the primary's (or failed), as operators see it. */
export interface MismatchEntry {
  at: string
  version: string
  method: string
  path: string
  primaryStatus: number
  /** 0 when the shadow gave no answer (see `error`). */
  shadowStatus: number
  /** What differed: `status`, `header:<name>`, `body`, or `error`. */
  differs: string[]
  /** The shadow's failure (refused, timeout, reset), when it gave no answer. */
  error?: string
  primaryMs: number | null
  shadowMs: number | null
}

const MAX_PATH = 200

/** The last few mismatches, newest last (a ring: older ones fall out). */
export class MismatchLog {
  readonly #entries: MismatchEntry[] = []
  /** Entries added since the last `takeNew` (never more than the log holds). */
  #fresh = 0

  constructor(readonly capacity = 50) {}

  add(e: MismatchEntry): void {
    if (e.path.length > MAX_PATH) e.path = `${e.path.slice(0, MAX_PATH)}...`
    this.#entries.push(e)
    if (this.#entries.length > this.capacity) this.#entries.shift()
    if (this.#fresh < this.capacity) this.#fresh++
  }

  /**
   * What was added since the last call, oldest first: a worker's report to
   * its primary. Bounded by the log's own size, so a flood of mismatches
   * sends no more per report than the primary can keep.
   */
  takeNew(): MismatchEntry[] {
    const n = this.#fresh
    this.#fresh = 0
    return n === 0 ? [] : this.#entries.slice(-n)
  }

  /** Entries recorded elsewhere (a primary's workers), each placed by its time, so the list stays oldest first. */
  merge(entries: readonly MismatchEntry[]): void {
    const list = this.#entries
    for (const e of entries) {
      let i = list.length
      while (i > 0 && list[i - 1]!.at > e.at) i--
      list.splice(i, 0, e)
    }
    if (list.length > this.capacity) list.splice(0, list.length - this.capacity)
  }

  list(): MismatchEntry[] {
    return [...this.#entries]
  }
}
