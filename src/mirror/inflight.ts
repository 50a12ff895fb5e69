/** Something an Inflight list can hold: it keeps its own position there. */
export interface Slotted {
  /** Index in the holding list; -1 while in none. Only Inflight writes it. */
  slot: number
}

/**
 * The copies in flight, as a dense array where each member knows its index:
 * add, remove and lookup in O(1) without hashing, and no table rebuilt as
 * the count swings between 0 and the cap.
 *
 * Not a Set, on purpose. A Set reallocates its table whenever its count
 * crosses a power of two, as this one's does all the time (0 to the cap and
 * back). V8 allocates the new table in old space when the Set is old, and
 * leaves the entries in the old table, linked to its successor for live
 * iterators, until the next full GC. So every copy in flight at a resize,
 * and everything it references, stays alive through all scavenges until
 * then and is promoted. With a Set here, mirroring 10% made the proxy
 * promote about 430 bytes per user request against 85-105 with mirroring
 * off, and its GC helper threads work ten times as long; with this list it
 * promotes 97-161 (bench/RESULTS.md, 2026-12-02, 18:00 UTC).
 */
export class Inflight<T extends Slotted> {
  readonly #items: T[] = []

  get size(): number {
    return this.#items.length
  }

  has(item: T): boolean {
    const slot = item.slot
    return slot >= 0 && this.#items[slot] === item
  }

  add(item: T): void {
    if (this.has(item)) return
    item.slot = this.#items.length
    this.#items.push(item)
  }

  /** Removes `item` (swapping the last member into its place); false if it was not held. */
  delete(item: T): boolean {
    if (!this.has(item)) return false
    const last = this.#items.pop()!
    if (last !== item) {
      this.#items[item.slot] = last
      last.slot = item.slot
    }
    item.slot = -1
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
      if (i >= items.length) continue
      fn(items[i]!)
    }
  }

  /** The members now, as a new array (for a caller that changes the list while going through it). */
  list(): T[] {
    return this.#items.slice()
  }
}
