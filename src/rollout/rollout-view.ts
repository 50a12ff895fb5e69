import type { RolloutState } from './rollout-state.js'

/**
 * The rollout as `/v1/state`, notifications and webhook gates show it: the
 * stored state with the values of gate and notification headers and the
 * paths of notification URLs hidden, since those carry tokens
 * (`authorization: Bearer ${CI_TOKEN}`, a Slack webhook's path).
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
    // A Slack incoming webhook URL is itself the credential: only its origin shows.
    notify: state.notify?.map((n) => ({ ...n, url: `${new URL(n.url).origin}/(hidden)`, headers: hide(n.headers) })),
  }
}

function hide(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of Object.keys(headers ?? {})) out[k] = '(hidden)'
  return out
}
