import { describe, expect, it } from 'vitest'
import { inAnyWindow, inWindow } from '../../../src/rollout/deploy-window.js'

const utc = (d: number, h: number, m = 0) => Date.UTC(2024, 0, d, h, m) // 2024-01-01 is a Monday

describe('deploy windows (fixed clock)', () => {
  const weekdays = { days: ['mon', 'tue', 'wed', 'thu'] as const, from: '09:00', to: '16:00' }

  it('from is inclusive, to exclusive, only on the listed days', () => {
    expect(inWindow({ ...weekdays, days: [...weekdays.days] }, utc(1, 9, 0))).toBe(true)
    expect(inWindow({ ...weekdays, days: [...weekdays.days] }, utc(1, 8, 59))).toBe(false)
    expect(inWindow({ ...weekdays, days: [...weekdays.days] }, utc(1, 15, 59))).toBe(true)
    expect(inWindow({ ...weekdays, days: [...weekdays.days] }, utc(1, 16, 0))).toBe(false)
    expect(inWindow({ ...weekdays, days: [...weekdays.days] }, utc(5, 10, 0))).toBe(false) // Friday
  })

  it('reads the time in the window time zone, daylight saving included', () => {
    const berlin = { from: '09:00', to: '16:00', timeZone: 'Europe/Berlin' }
    // Winter: UTC+1. 08:30 UTC is 09:30 in Berlin.
    expect(inWindow(berlin, utc(2, 8, 30))).toBe(true)
    expect(inWindow(berlin, utc(2, 15, 30))).toBe(false)
    // Summer: UTC+2. 2024-07-01 07:30 UTC is 09:30 in Berlin.
    expect(inWindow(berlin, Date.UTC(2024, 6, 1, 7, 30))).toBe(true)
    expect(inWindow(berlin, Date.UTC(2024, 6, 1, 6, 30))).toBe(false)
    // Monday 23:30 UTC is already Tuesday in Tokyo.
    expect(inWindow({ days: ['tue'], from: '08:00', to: '09:00', timeZone: 'Asia/Tokyo' }, utc(1, 23, 30))).toBe(true)
  })

  it('to before from crosses midnight and belongs to the day it opens on', () => {
    const night = { days: ['fri' as const], from: '22:00', to: '02:00' }
    expect(inWindow(night, utc(5, 22, 0))).toBe(true) // Friday 22:00
    expect(inWindow(night, utc(6, 1, 59))).toBe(true) // Saturday 01:59
    expect(inWindow(night, utc(6, 2, 0))).toBe(false)
    expect(inWindow(night, utc(5, 1, 0))).toBe(false) // Friday 01:00 belongs to Thursday's night
    expect(inWindow(night, utc(6, 22, 0))).toBe(false) // Saturday evening
  })

  it('no windows: any time; several: inside any one', () => {
    expect(inAnyWindow([], utc(6, 3))).toBe(true)
    const two = [
      { from: '01:00', to: '02:00' },
      { from: '05:00', to: '06:00' },
    ]
    expect(inAnyWindow(two, utc(3, 5, 30))).toBe(true)
    expect(inAnyWindow(two, utc(3, 3, 0))).toBe(false)
  })
})
