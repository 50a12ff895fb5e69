import type { Logger } from 'pino'
import { causeOf } from './gate-webhook.js'
import type { NotifyEvent, NotifyTarget } from './gates-schema.js'

/** The JSON a target receives (README "Notifications"). */
export interface Notification {
  event: NotifyEvent
  /** ISO 8601. */
  at: string
  /** The rollout as `/v1/state.rollout` shows it. */
  rollout: Record<string, unknown>
  reason: string | null
}

export interface NotifierOptions {
  log: Logger
  /** Called once per notification given up on after its last retry. */
  onFailed: () => void
  /** Per try. */
  timeoutMs?: number
  /** Waits before each retry. */
  retryDelaysMs?: readonly number[]
}

const RETRY_DELAYS_MS = [1000, 2000, 4000]

/**
 * Sends rollout notifications off the rollout's critical path: `send`
 * only queues. Each target has its own queue, worked one notification at a
 * time, so a target sees the events in the order they happened and a slow
 * or dead target delays nobody else. A failed POST (no 2xx, no answer
 * within the timeout) is retried after 1, 2 and 4 s, then logged and
 * counted.
 */
export class Notifier {
  readonly #opts: NotifierOptions
  readonly #queues = new Map<string, Promise<void>>()
  #stopped = false

  constructor(opts: NotifierOptions) {
    this.#opts = opts
  }

  /** Queues `n` for every target subscribed to its event. */
  send(targets: readonly NotifyTarget[], n: Notification): void {
    if (this.#stopped) return
    for (const t of targets) {
      if (!t.events.includes(n.event)) continue
      const key = JSON.stringify([t.url, t.format, t.headers])
      const tail = this.#queues.get(key) ?? Promise.resolve()
      const next = tail.then(() => this.#deliver(t, n))
      this.#queues.set(key, next)
      void next.then(() => {
        if (this.#queues.get(key) === next) this.#queues.delete(key)
      })
    }
  }

  /** Waits for every queued notification (the retries too). */
  async idle(): Promise<void> {
    while (this.#queues.size > 0) await Promise.all(this.#queues.values())
  }

  /** Drops what has not been sent yet; a try in flight ends on its own timeout. */
  stop(): void {
    this.#stopped = true
  }

  async #deliver(t: NotifyTarget, n: Notification): Promise<void> {
    const body = JSON.stringify(t.format === 'slack' ? slackMessage(n) : n)
    const delays = this.#opts.retryDelaysMs ?? RETRY_DELAYS_MS
    let why = ''
    for (let attempt = 0; attempt <= delays.length; attempt++) {
      if (this.#stopped) return
      if (attempt > 0) await sleep(delays[attempt - 1]!)
      try {
        const res = await fetch(t.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...t.headers },
          body,
          signal: AbortSignal.timeout(this.#opts.timeoutMs ?? 5000),
        })
        await res.arrayBuffer()
        if (res.status >= 200 && res.status < 300) return
        why = `answered ${res.status}`
      } catch (err) {
        const e = err as Error
        why = e.name === 'TimeoutError' ? 'no answer in time' : causeOf(e)
      }
    }
    this.#opts.onFailed()
    this.#opts.log.warn(
      { url: t.url, event: n.event, rollout: n.rollout.id, tries: delays.length + 1, why },
      'rollout notification failed',
    )
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}

/** A Slack incoming webhook takes `{"text": ...}`. */
export function slackMessage(n: Notification): { text: string } {
  const r = n.rollout
  // Counted from 1 for people; a promoted rollout's index is past its last step and is not shown.
  const steps = Array.isArray(r.steps) ? r.steps.length : 0
  const step = typeof r.step === 'number' && r.step >= 0 && r.step < steps ? ` at step ${r.step + 1} of ${steps}` : ''
  const awaiting = n.event === 'awaiting' && r.awaiting ? ` (awaits ${String(r.awaiting)})` : ''
  const why = n.reason ? `: ${n.reason}` : ''
  return { text: `sluice rollout of ${String(r.canary)} ${n.event.replace('_', ' ')}${step}${awaiting}${why}` }
}
