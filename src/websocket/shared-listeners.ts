import type { EventEmitter } from 'node:events'

type Emitter = EventEmitter & { _events: Record<string, unknown>; _eventsCount: number }

/** What adds or removes a listener: each takes a private copy of a shared table first. */
const MUTATORS = [
  'addListener',
  'on',
  'prependListener',
  'once',
  'prependOnceListener',
  'removeListener',
  'off',
  'removeAllListeners',
] as const

interface Sharing {
  readonly table: Readonly<Record<string, unknown>>
  readonly proto: object
}

/** One shared table per prototype (ws's Receiver is the one used). */
const sharings = new Map<object, Sharing | null>()

/**
 * ws gives each WebSocket's Receiver the same six listeners (module-level
 * functions, no closures), each in a listener table of its own: about 120
 * bytes per Receiver, two per relayed connection. Emitters whose table
 * holds exactly the listeners of the first one seen share that one, frozen.
 * The first time anything adds or removes a listener (ws does when a
 * socket closes) the emitter gets a private copy again, so EventEmitter
 * works as ever; an emitter with any other table keeps its own.
 */
export function shareListenerTable(emitter: EventEmitter): void {
  const e = emitter as Emitter
  const base = Object.getPrototypeOf(e) as object
  let s = sharings.get(base)
  if (s === undefined) {
    s = sharingFor(base, e._events)
    sharings.set(base, s)
  }
  if (s === null || !sameListeners(e._events, s.table)) return
  Object.setPrototypeOf(e, s.proto)
  e._events = s.table as Record<string, unknown>
}

function sharingFor(base: object, events: Record<string, unknown>): Sharing | null {
  const table: Record<string, unknown> = Object.create(null) as Record<string, unknown>
  for (const type of Object.keys(events)) {
    const listener = events[type]
    // A single function each: arrays (several listeners) or once-wrappers are per emitter. (Node's
    // streams start their table with some types present and undefined.)
    if (listener !== undefined && (typeof listener !== 'function' || 'listener' in listener)) return null
    table[type] = listener
  }
  Object.freeze(table)
  const proto: Record<string, unknown> = Object.create(base) as Record<string, unknown>
  const inherited = base as Record<string, unknown>
  for (const name of MUTATORS) {
    const original = inherited[name] as (this: Emitter, ...args: unknown[]) => unknown
    proto[name] = function (this: Emitter, ...args: unknown[]): unknown {
      if (this._events === table) this._events = Object.assign(Object.create(null) as object, table)
      return original.apply(this, args)
    }
  }
  return { table, proto }
}

function sameListeners(a: Record<string, unknown>, b: Readonly<Record<string, unknown>>): boolean {
  const keys = Object.keys(a)
  if (keys.length !== Object.keys(b).length) return false
  for (const k of keys) if (a[k] !== b[k]) return false
  return true
}
