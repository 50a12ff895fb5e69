import { createHash, type Hash } from 'node:crypto'
import { canonicalJson, removePointer } from './json-pointer.js'

const JSON_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i

/** Bodies up to this size are compared byte for byte: cheaper than hashing them. */
const SMALL_BYTES = 1024

/**
 * What one response body is compared by, fed chunk by chunk as the body
 * streams (the primary's on its way to the user, the shadow's as it is
 * discarded). A small body is kept and compared as it is; a larger one is
 * hashed as it passes, nothing kept. Only when JSON pointers are to be
 * ignored and the body says it is JSON is it kept up to `maxBytes`, then
 * parsed, stripped of the ignored fields and hashed in canonical form
 * (members sorted). A body over the bound falls back to the raw form: it is
 * never buffered without limit. The forms carry different prefixes, and the
 * raw form depends only on the bytes, so two bodies compare equal exactly
 * when their bytes (or their stripped JSON) are equal.
 */
export class BodyDigest {
  #hash: Hash | undefined
  #chunks: Buffer[] | undefined = []
  #kept = 0
  #json = false
  readonly #small: number

  constructor(
    readonly pointers: readonly (readonly string[])[],
    readonly maxBytes: number,
    opts: { smallBytes?: number } = {},
  ) {
    this.#small = opts.smallBytes ?? SMALL_BYTES
  }

  /** Called with the response's content type before the first chunk. */
  begin(contentType: string | string[] | undefined): void {
    const type = Array.isArray(contentType) ? contentType[0] : contentType
    this.#json = this.pointers.length > 0 && type !== undefined && JSON_TYPE.test(type)
  }

  update(chunk: Buffer): void {
    const chunks = this.#chunks
    if (chunks === undefined) {
      this.#hash!.update(chunk)
      return
    }
    this.#kept += chunk.length
    chunks.push(chunk)
    const limit = this.#json ? Math.max(this.maxBytes, this.#small) : this.#small
    if (this.#kept <= limit) return
    // Too big to keep: hashed from here on.
    this.#chunks = undefined
    const hash = createHash('sha1')
    for (const c of chunks) hash.update(c)
    this.#hash = hash
  }

  /** `json:<hash>` for a parsed, stripped JSON body; `bytes:<body>` or `raw:<hash>` otherwise. Call once. */
  digest(): string {
    const chunks = this.#chunks
    if (chunks === undefined) return `raw:${this.#hash!.digest('hex')}`
    const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#kept)
    if (this.#json && this.#kept <= this.maxBytes) {
      try {
        const doc: unknown = JSON.parse(bytes.toString('utf8'))
        for (const p of this.pointers) removePointer(doc, p)
        return `json:${createHash('sha1').update(canonicalJson(doc)).digest('hex')}`
      } catch {
        // Not JSON after all: compared raw.
      }
    }
    return this.#kept <= this.#small
      ? `bytes:${bytes.toString('latin1')}`
      : `raw:${createHash('sha1').update(bytes).digest('hex')}`
  }
}
