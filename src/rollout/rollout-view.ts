import type { RolloutState } from './rollout-state.js'

/**
 * The rollout as `/v1/state`, notifications and webhook gates show it: the
 * stored state with the values of gate and notification headers hidden,
 * since those carry tokens (`authorization: Bearer ${CI_TOKEN}`).
 */
export function rolloutView(state: RolloutState): Record<string, unknown> {
  if (!state.gates?.length && !state.notify?.length) return state as unknown as Record<string, unknown>
  return {
    ...state,
    gates: state.gates?.map((g) => ({
      ...g,
      ...(g.webhook && { webhook: { ...g.webhook, headers: hide(g.webhook.headers) } }),
      ...(g.prometheus && { prometheus: { ...g.prometheus, headers: hide(g.prometheus.headers) } }),
    })),
    notify: state.notify?.map((n) => ({ ...n, headers: hide(n.headers) })),
  }
}

function hide(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of Object.keys(headers ?? {})) out[k] = '(hidden)'
  return out
}
