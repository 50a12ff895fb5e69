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

  constructor(readonly capacity = 50) {}

  add(e: MismatchEntry): void {
    if (e.path.length > MAX_PATH) e.path = `${e.path.slice(0, MAX_PATH)}...`
    this.#entries.push(e)
    if (this.#entries.length > this.capacity) this.#entries.shift()
  }

  list(): MismatchEntry[] {
    return [...this.#entries]
  }
}
