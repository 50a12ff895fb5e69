import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { shareListenerTable } from '../../../src/websocket/shared-listeners.js'

// Its own class: the shared table is kept per prototype, and other files may share EventEmitter's.
class Source extends EventEmitter {}
const seen: string[] = []
function onData(this: Source, v: string): void {
  seen.push(`data:${v}`)
}
function onEnd(): void {
  seen.push('end')
}
function made(): Source {
  const e = new Source()
  e.on('data', onData)
  e.on('end', onEnd)
  shareListenerTable(e)
  return e
}
const events = (e: EventEmitter) => (e as unknown as { _events: object })._events

describe('shareListenerTable', () => {
  it('gives emitters with the same listeners one table, which still delivers events', () => {
    const a = made()
    const b = made()
    expect(events(a)).toBe(events(b))
    seen.length = 0
    a.emit('data', 'x')
    b.emit('end')
    expect(seen).toEqual(['data:x', 'end'])
    expect(a.listenerCount('data')).toBe(1)
  })

  it('gives an emitter its own table again before a listener is added or removed', () => {
    const a = made()
    const b = made()
    const extra = () => seen.push('extra')
    a.on('end', extra)
    a.once('data', extra)
    seen.length = 0
    a.emit('end')
    b.emit('end')
    expect(seen).toEqual(['end', 'extra', 'end'])
    expect(b.listenerCount('end')).toBe(1)
    b.removeAllListeners()
    expect(b.listenerCount('data')).toBe(0)
    expect(made().listenerCount('data')).toBe(1)
    const c = made()
    c.off('data', onData)
    expect(c.listenerCount('data')).toBe(0)
    expect(made().listenerCount('data')).toBe(1)
  })

  it('leaves an emitter with other listeners its own table', () => {
    const a = made()
    const b = new Source()
    b.on('data', onData)
    shareListenerTable(b)
    expect(events(b)).not.toBe(events(a))
    seen.length = 0
    b.emit('data', 'y')
    expect(seen).toEqual(['data:y'])
  })

  it('shares the table of a stream, which node starts with some types present and undefined', () => {
    class Sink extends Writable {}
    const sinks = [new Sink(), new Sink()]
    for (const s of sinks) {
      s.on('data', onData)
      shareListenerTable(s)
    }
    expect(events(sinks[0]!)).toBe(events(sinks[1]!))
    seen.length = 0
    sinks[1]!.emit('data', 'z')
    expect(seen).toEqual(['data:z'])
  })
})
