import type { IncomingHttpHeaders } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'
import { ShadowTimeoutError } from '../errors.js'
import { kSlot, type Slotted } from '../proxy/dense-set.js'
import type { ResponseTap } from '../proxy/forward.js'
import { responseHeaderList } from '../proxy/headers.js'
import { differences } from './answer-compare.js'
import type { MirrorRun } from './mirror-run.js'
import type { MirrorOutcome } from './mirror-stats.js'
import { ObservedAnswer } from './observed-answer.js'

/** What the mirror learns from a copy. */
export interface CopyOwner {
  /** The shadow exchange is over (answered, failed, timed out or cancelled): it no longer counts in flight. */
  released(copy: MirrorCopy): void
  /** Both sides are known: the copy's outcome can be counted. Not called for a cancelled copy. */
  settled(copy: MirrorCopy, outcome: MirrorOutcome, differs: readonly string[]): void
}

/**
 * One mirrored request, both sides of it. As a ResponseTap it watches the
 * user's response stream by (status, compared headers, body digest, latency);
 * as an undici dispatch handler it sends the copy to the shadow and reads
 * the shadow's answer the same way, then discards it. Whichever side ends
 * last settles the copy. The shadow has a hard deadline (`timeoutMs`) from
 * the moment it is sent, enforced by the mirror's sweep (one timer for all
 * copies, not one each); it never pauses, never writes anywhere.
 */
export class MirrorCopy implements Dispatcher.DispatchHandler, ResponseTap, Slotted {
  /** Position in the mirror's set of copies in flight (DenseSet). */
  [kSlot] = -1
  readonly primary = new ObservedAnswer()
  primaryMs: number | undefined
  #primaryCut = false
  #primaryDone = false

  readonly shadow = new ObservedAnswer()
  shadowMs: number | undefined
  error: string | undefined
  #shadowDone = false
  #sentAt = 0
  /** performance.now() past which the copy counts as timed out; Infinity until sent. */
  deadlineAt = Number.POSITIVE_INFINITY
  #controller: Dispatcher.DispatchController | undefined
  #released = false
  #cancelled = false

  constructor(
    readonly owner: CopyOwner,
    readonly run: MirrorRun,
    readonly method: string,
    readonly path: string,
    /** The request's sticky key (or NO_KEY), for the shadow instance choice. */
    readonly key: number,
  ) {}

  // ---- the user's response (ResponseTap) ----

  start(status: number, headers: readonly (string | string[])[]): void {
    this.primary.begin(status, headers, this.run.settings)
  }

  data(chunk: Buffer): void {
    this.primary.update(chunk)
  }

  finish(status: number, cut: boolean, ms: number): void {
    if (this.#primaryDone) return
    this.#primaryDone = true
    if (!this.primary.started) this.primary.status = status
    this.#primaryCut = cut
    this.primaryMs = cut ? undefined : ms
    this.#maybeSettle()
  }

  // ---- the shadow ----

  /** Sends the copy. `body` is the whole (small) request body, or null. */
  send(pool: Pick<Dispatcher, 'dispatch'>, headers: string[], body: Buffer | null): void {
    const timeoutMs = this.run.settings.timeoutMs
    this.#sentAt = performance.now()
    this.deadlineAt = this.#sentAt + timeoutMs
    try {
      pool.dispatch(
        { path: this.path, method: this.method, headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs },
        this,
      )
    } catch (err) {
      this.onResponseError(undefined, err as Error)
    }
  }

  /** The copy could not be sent at all (no usable instance). */
  fail(reason: string): void {
    this.#shadowEnded(reason)
    this.#release()
  }

  /** The mirror stops: the shadow is abandoned and not counted. */
  cancel(): void {
    this.#cancelled = true
    this.#controller?.abort(new Error('mirroring stopped'))
    this.#shadowEnded('cancelled')
    this.#release()
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#shadowDone) controller.abort(new ShadowTimeoutError('mirror copy over its deadline'))
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    if (statusCode < 200 || this.#shadowDone) return
    this.shadow.begin(statusCode, responseHeaderList(headers), this.run.settings)
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#shadowDone) this.shadow.update(chunk)
  }

  onResponseEnd(): void {
    if (!this.#shadowDone) {
      this.shadowMs = performance.now() - this.#sentAt
      this.#shadowEnded(undefined)
    }
    this.#release()
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (!this.#shadowDone) {
      const code = (err as { code?: unknown }).code
      this.#shadowEnded(typeof code === 'string' ? `${code}: ${err.message}` : err.message)
    }
    this.#release()
  }

  /** The deadline passed (the mirror's sweep): the copy counts as an error now; the exchange is cut as soon as it can be. */
  deadline(): void {
    if (this.#shadowDone) return
    this.shadowMs = performance.now() - this.#sentAt
    this.#shadowEnded(`timeout: no complete answer within ${this.run.settings.timeoutMs} ms`)
    this.#controller?.abort(new ShadowTimeoutError('mirror copy over its deadline'))
  }

  #shadowEnded(error: string | undefined): void {
    if (this.#shadowDone) return
    this.#shadowDone = true
    this.error = error
    this.#maybeSettle()
  }

  #release(): void {
    if (this.#released) return
    this.#released = true
    this.owner.released(this)
  }

  #maybeSettle(): void {
    if (!this.#shadowDone || !this.#primaryDone || this.#cancelled) return
    if (this.error !== undefined) {
      this.owner.settled(this, 'error', ['error'])
      return
    }
    // Compared only against a whole answer the user got.
    if (!this.run.settings.compare || this.#primaryCut || !this.primary.started) {
      this.owner.settled(this, 'uncompared', [])
      return
    }
    const differs = differences(this.primary.compared(), this.shadow.compared())
    this.owner.settled(this, differs.length === 0 ? 'match' : 'mismatch', differs)
  }
}
