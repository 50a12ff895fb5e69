import type { GateCheck } from './rollout-machine.js'

export interface WebhookGate {
  name: string
  url: string
  timeoutMs: number
  headers: Record<string, string>
}

/**
 * A webhook gate: POSTs the rollout context as JSON; a 2xx answer within
 * `timeoutMs` passes, any other status fails, no answer (refused, timeout)
 * is an error. The answer's body is read only to free the connection.
 */
export async function checkWebhook(gate: WebhookGate, context: Record<string, unknown>): Promise<GateCheck> {
  const name = gate.name
  try {
    const res = await fetch(gate.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...gate.headers },
      body: JSON.stringify({ ...context, gate: name }),
      signal: AbortSignal.timeout(gate.timeoutMs),
    })
    await res.arrayBuffer()
    const ok = res.status >= 200 && res.status < 300
    return { gate: name, result: ok ? 'pass' : 'fail', reason: `gate ${name}: webhook answered ${res.status}` }
  } catch (err) {
    const e = err as Error
    const why = e.name === 'TimeoutError' ? `no answer within ${gate.timeoutMs} ms` : `failed: ${causeOf(e)}`
    return { gate: name, result: 'error', reason: `gate ${name}: webhook ${why}` }
  }
}

/** fetch wraps the socket error ("fetch failed"); the cause says what happened. */
export function causeOf(e: Error): string {
  const cause = e.cause as { code?: string; message?: string } | undefined
  return cause?.code ?? cause?.message ?? e.message
}
