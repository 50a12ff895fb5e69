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

  /** The response head; `headers` is the flat list without hop-by-hop headers (responseHeaderList). */
  begin(status: number, headers: readonly (string | string[])[], settings: MirrorSettings): void {
    this.started = true
    this.status = status
    if (!settings.compare) return
    this.#headers = comparedHeaders(headers, settings.ignoreHeaders)
    this.#body = new BodyDigest(settings.pointers, settings.maxBodyBytes)
    this.#body.begin(valueOf(headers, 'content-type'))
  }

  update(chunk: Buffer): void {
    this.#body?.update(chunk)
  }

  /** Call once, when the answer is complete. */
  compared(): ComparedAnswer {
    return { status: this.status, headers: this.#headers ?? {}, body: this.#body?.digest() ?? '' }
  }
}

function valueOf(list: readonly (string | string[])[], name: string): string | string[] | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1]
  return undefined
}
