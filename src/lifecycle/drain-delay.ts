import type { Logger } from 'pino'

/**
 * `drain.delayMs` (README "Stopping behind a load balancer"): between a stop
 * signal and the stop itself the proxy answers `/readyz` 503 and keeps
 * accepting and serving, so Kubernetes or a load balancer takes it out of
 * rotation before it refuses anything (the endpoint removal and the signal
 * race; Envoy's drain time and nginx's `preStop` sleeps exist for the same
 * reason). Responses carry `Connection: close` meanwhile, so clients move to
 * another proxy at their next request. A second signal ends the delay.
 */
export interface DelayTarget {
  /** Extra readiness conditions: the delay adds one that fails. */
  readonly readiness: (() => boolean)[]
  /** Read per response: while set, responses close their connection. */
  readonly forwardContext: { stopping: boolean }
  readonly config: { readonly drain: { readonly delayMs: number } }
}

type Signals = Pick<NodeJS.EventEmitter, 'on' | 'off'>

const SIGNALS = ['SIGTERM', 'SIGINT'] as const
const delays = new WeakMap<DelayTarget, { over: Promise<void>; end(): void }>()

/**
 * Starts the delay and resolves when it is over. A second call (the same
 * proxy asked to stop again) ends it at once; so does SIGTERM or SIGINT
 * arriving while it runs (listened to only meanwhile, so afterwards a signal
 * does what it did before).
 */
export function drainDelay(target: DelayTarget, log: Logger, signals: Signals = process): Promise<void> {
  const running = delays.get(target)
  if (running) {
    running.end()
    return running.over
  }
  const delayMs = target.config.drain.delayMs
  target.readiness.push(notReady)
  if (delayMs <= 0) {
    const over = Promise.resolve()
    delays.set(target, { over, end: noop })
    return over
  }
  target.forwardContext.stopping = true
  let end = noop
  const over = new Promise<void>((resolve) => {
    let done = false
    const timer = setTimeout(() => finish('elapsed'), delayMs)
    timer.unref()
    const onSignal = (signal: NodeJS.Signals) => finish(signal)
    function finish(why: string): void {
      if (done) return
      done = true
      clearTimeout(timer)
      for (const s of SIGNALS) signals.off(s, onSignal)
      log.info({ delayMs, ended: why }, 'drain delay over: no new connections from here')
      resolve()
    }
    for (const s of SIGNALS) signals.on(s, onSignal)
    end = () => finish('stop requested again')
  })
  delays.set(target, { over, end: () => end() })
  log.info({ delayMs }, 'drain delay: /readyz 503, still serving')
  return over
}

function notReady(): boolean {
  return false
}

function noop(): void {}
