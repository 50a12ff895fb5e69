/**
 * Deploy windows: when a rollout may advance a step. Pure functions of a
 * time; the zone arithmetic is the runtime's own `Intl` data, so a window in
 * `Europe/Berlin` follows its daylight saving changes with no dependency.
 */

import { type DeployWindow, WEEKDAYS, type Weekday } from '../state/types.js'

export { WEEKDAYS } from '../state/types.js'
export type { DeployWindow, Weekday } from '../state/types.js'

export const HH_MM = /^([01]\d|2[0-3]):[0-5]\d$/

const formats = new Map<string, Intl.DateTimeFormat>()

function formatFor(timeZone: string): Intl.DateTimeFormat {
  let f = formats.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
    formats.set(timeZone, f)
  }
  return f
}

/** Whether the runtime knows this IANA time zone. */
export function knownTimeZone(timeZone: string): boolean {
  try {
    formatFor(timeZone)
    return true
  } catch {
    return false
  }
}

function minutes(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5))
}

/** The weekday index (0 = mon) and minute of the day of `at` in `timeZone`. */
function localTime(at: number, timeZone: string): { day: number; minute: number } {
  let day = 0
  let hour = 0
  let minute = 0
  for (const p of formatFor(timeZone).formatToParts(at)) {
    if (p.type === 'weekday') day = WEEKDAYS.indexOf(p.value.toLowerCase() as Weekday)
    else if (p.type === 'hour') hour = Number(p.value)
    else if (p.type === 'minute') minute = Number(p.value)
  }
  return { day, minute: hour * 60 + minute }
}

/**
 * Whether `at` (epoch ms) falls inside the window. A window that crosses
 * midnight belongs to the day it opens on: `fri 22:00-02:00` includes
 * Saturday 01:00 and not Monday 01:00. `from` equal to `to` is the whole day.
 */
export function inWindow(w: DeployWindow, at: number): boolean {
  const { day, minute } = localTime(at, w.timeZone ?? 'UTC')
  const from = minutes(w.from)
  const to = minutes(w.to)
  const opensOn = (d: number) => w.days === undefined || w.days.includes(WEEKDAYS[d]!)
  if (from < to) return minute >= from && minute < to && opensOn(day)
  if (minute >= from) return opensOn(day)
  return minute < to && opensOn((day + 6) % 7)
}

/** With no windows a rollout advances any time; with some, only inside one of them. */
export function inAnyWindow(windows: readonly DeployWindow[], at: number): boolean {
  return windows.length === 0 || windows.some((w) => inWindow(w, at))
}
