import type { IncomingHttpHeaders } from 'node:http'
import { type ComparedAnswer, comparedHeaders } from './answer-compare.js'
import { BodyDigest } from './body-digest.js'
import type { MirrorSettings } from './mirror-settings.js'

/**
 * One side of a mirrored request (the user's response or the shadow's) as
 * it streams by: status, the compared headers and a body digest; nothing of
 * the body is kept beyond what BodyDigest bounds. With compare off only the
 * status is noted.
 */
export class ObservedAnswer {
  status = 0
  started = false
  #headers: Record<string, string> | undefined
  #body: BodyDigest | undefined

  /** The response head; `headers` already stripped of hop-by-hop headers. */
  begin(status: number, headers: IncomingHttpHeaders, settings: MirrorSettings): void {
    this.started = true
    this.status = status
    if (!settings.compare) return
    this.#headers = comparedHeaders(headers, settings.ignoreHeaders)
    this.#body = new BodyDigest(settings.pointers, settings.maxBodyBytes)
    this.#body.begin(headers['content-type'])
  }

  update(chunk: Buffer): void {
    this.#body?.update(chunk)
  }

  /** Call once, when the answer is complete. */
  compared(): ComparedAnswer {
    return { status: this.status, headers: this.#headers ?? {}, body: this.#body?.digest() ?? '' }
  }
}
