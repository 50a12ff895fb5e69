import { fmix32 } from '../routing/hash.js'
import { NO_KEY } from '../routing/table.js'

/** Separates the mirror draw from the version and instance draws made on the same key hash. */
const MIRROR_SALT = 0x6d697272

/**
 * Which eligible requests are copied. A request with a sticky key is chosen
 * by a hash of the key, so all of one user's requests are mirrored together
 * (the shadow sees whole sessions, not a random tenth of each); a keyless
 * request is chosen by a running share (Bresenham's line, in effect): exactly
 * `percent` of every hundred, evenly interleaved, no random numbers.
 * No allocation per call.
 */
export class MirrorSampler {
  /** Out of 10_000, so keyed draws are fine-grained. */
  readonly #threshold: number
  readonly #percent: number
  #acc = 0

  constructor(percent: number) {
    this.#percent = percent
    this.#threshold = percent * 100
  }

  take(key: number): boolean {
    if (key !== NO_KEY) return fmix32(key ^ MIRROR_SALT) % 10_000 < this.#threshold
    this.#acc += this.#percent
    if (this.#acc < 100) return false
    this.#acc -= 100
    return true
  }
}
