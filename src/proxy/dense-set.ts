/** Where a DenseSet keeps a member's index, on the member itself. */
export const kSlot: unique symbol = Symbol('sluice.slot')

/** Something a DenseSet can hold. */
export interface Slotted {
  /** Index in the holding set; -1 or absent while in none. Only DenseSet writes it. */
  [kSlot]?: number
}

/**
 * A set kept as a dense array, each member knowing its own index: add,
 * remove and lookup in O(1) without hashing. For collections whose size
 * swings all the time on the data path: the client connections of the
 * listener, the mirror's copies in flight. A member is in one DenseSet at
 * a time.
 *
 * Not a Set, on purpose. A Set reallocates its table whenever its count
 * crosses a power of two. V8 allocates the new table in old space when the
 * Set is old, and leaves the entries in the old table, linked to its
 * successor for live iterators, until the next full GC. So every member
 * held at a resize, and everything it references, stays alive through all
 * scavenges until then and is promoted: several times the bytes promoted
 * per request with a Set, in the mirror and Connection: close benches.
 */
export class DenseSet<T extends Slotted> {
  readonly #items: T[] = []

  get size(): number {
    return this.#items.length
  }

  has(item: T): boolean {
    // -1 or a slot of another set reads as undefined or another member.
    const slot = item[kSlot]
    return slot !== undefined && this.#items[slot] === item
  }

  add(item: T): void {
    if (this.has(item)) return
    item[kSlot] = this.#items.length
    this.#items.push(item)
  }

  /** Removes `item` (the last member takes its place); false if it was not held. */
  delete(item: T): boolean {
    if (!this.has(item)) return false
    const slot = item[kSlot]!
    const last = this.#items.pop()!
    if (last !== item) {
      this.#items[slot] = last
      last[kSlot] = slot
    }
    item[kSlot] = -1
    return true
  }

  /**
   * Calls `fn` for each member, walking from the end, so `fn` may remove the
   * member it is given: that only moves a member already visited into its
   * place.
   */
  forEach(fn: (item: T) => void): void {
    const items = this.#items
    for (let i = items.length - 1; i >= 0; i--) {
      if (i < items.length) fn(items[i]!)
    }
  }
}
