import { asObj, formatChange, formatTime } from './ctl-format.js'

/**
 * What the demo's terminal shows while it runs: every change of desired
 * state (weights, drains, rollout steps, promotions, rollbacks) and every
 * instance that goes down, comes back, is ejected or returns, one line each,
 * read from the proxy's own log lines so that the demo shows what an
 * operator's log shows.
 */
export function demoEventLine(line: string): string | undefined {
  let entry: Record<string, unknown>
  try {
    entry = JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
  const at = clock(entry['time'])
  const audit = asObj(entry['audit'])
  if (audit) {
    const who = `${String(audit['source'] ?? '-')}${typeof audit['actor'] === 'string' ? ` (${audit['actor']})` : ''}`
    const reason = typeof audit['reason'] === 'string' ? `  (${audit['reason']})` : ''
    const change = `${formatChange(audit['before'])} -> ${formatChange(audit['after'])}`
    return `${at}  ${String(audit['action'] ?? 'change')} by ${who}: ${change}${reason}\n`
  }
  const msg = entry['msg']
  if (typeof msg === 'string' && msg.startsWith('instance ') && typeof entry['instance'] === 'string') {
    const version = typeof entry['version'] === 'string' ? ` (${entry['version']})` : ''
    return `${at}  ${msg}: ${entry['instance']}${version}\n`
  }
  return undefined
}

/** HH:MM:SS of a log line's ISO or epoch time. */
function clock(time: unknown): string {
  const t = formatTime(time)
  const space = t.indexOf(' ')
  return space < 0 ? t : t.slice(space + 1)
}
