/**
 * Health flips only after a run of agreeing probe results (Envoy's
 * healthy_threshold / unhealthy_threshold): a pending transition is the
 * streak of results that disagree with the current state.
 */
export interface ProbeState {
  healthy: boolean
  lastOk: boolean
  streak: number
}

export interface Thresholds {
  healthy: number
  unhealthy: number
}

export function nextHealth(s: ProbeState, ok: boolean, t: Thresholds): ProbeState {
  const streak = ok === s.lastOk ? s.streak + 1 : 1
  const flips = s.healthy !== ok && streak >= (ok ? t.healthy : t.unhealthy)
  return { healthy: flips ? ok : s.healthy, lastOk: ok, streak }
}

/**
 * A never-probed instance starts unhealthy with a pending streak that one
 * passing probe completes (README, Proxying rules: one passing probe makes
 * it healthy at start or when added).
 */
export function unprobed(t: Thresholds): ProbeState {
  return { healthy: false, lastOk: true, streak: Math.max(0, t.healthy - 1) }
}
