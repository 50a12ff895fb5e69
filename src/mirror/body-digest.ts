import { createHash, type Hash } from 'node:crypto'
import { canonicalJson, removePointer } from './json-pointer.js'

const JSON_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i

/**
 * A digest of one response body, fed chunk by chunk as the body streams (the
 * primary's on its way to the user, the shadow's as it is discarded). Raw
 * bytes are hashed as they pass, nothing kept. Only when JSON pointers are
 * to be ignored and the body says it is JSON is it kept, up to `maxBytes`,
 * then parsed, stripped of the ignored fields and hashed in canonical form
 * (members sorted). A body over the bound falls back to the raw digest: it
 * is never buffered without limit. The two forms carry different prefixes,
 * so they never compare equal by accident.
 */
export class BodyDigest {
  #hash: Hash | undefined
  #chunks: Buffer[] | undefined
  #kept = 0

  constructor(
    readonly pointers: readonly (readonly string[])[],
    readonly maxBytes: number,
  ) {}

  /** Called with the response's content type before the first chunk. */
  begin(contentType: string | string[] | undefined): void {
    const type = Array.isArray(contentType) ? contentType[0] : contentType
    if (this.pointers.length > 0 && type !== undefined && JSON_TYPE.test(type)) this.#chunks = []
  }

  update(chunk: Buffer): void {
    const chunks = this.#chunks
    if (chunks !== undefined) {
      if (this.#kept + chunk.length <= this.maxBytes) {
        chunks.push(chunk)
        this.#kept += chunk.length
        return
      }
      this.#chunks = undefined
      const hash = this.#rawHash()
      for (const c of chunks) hash.update(c)
    }
    this.#rawHash().update(chunk)
  }

  /** `json:<hex>` for a parsed, stripped JSON body; `raw:<hex>` otherwise. Call once. */
  digest(): string {
    const chunks = this.#chunks
    if (chunks !== undefined) {
      const bytes = Buffer.concat(chunks)
      let doc: unknown
      try {
        doc = JSON.parse(bytes.toString('utf8'))
      } catch {
        return `raw:${sha1(bytes)}`
      }
      for (const p of this.pointers) removePointer(doc, p)
      return `json:${sha1(canonicalJson(doc))}`
    }
    return `raw:${this.#rawHash().digest('hex')}`
  }

  #rawHash(): Hash {
    this.#hash ??= createHash('sha1')
    return this.#hash
  }
}

function sha1(data: string | Buffer): string {
  return createHash('sha1').update(data).digest('hex')
}
