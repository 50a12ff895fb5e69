import { fmix32, mix } from './hash.js'
import type { Instance } from './instance.js'

/**
 * Sticky instance choice in O(1): weighted rendezvous hashing over a fixed
 * set of 65,536 key buckets, each bucket's winner and score kept in arrays.
 *
 * A key's bucket is the top 16 bits of its hash; every key of a bucket is
 * hashed as the bucket's own hash, and the bucket goes to the instance with
 * the highest score u^(1/w), u a uniform draw per (bucket, instance) and w
 * the instance's weight. That is weighted rendezvous hashing (Efraimidis and
 * Spirakis, "Weighted random sampling with a reservoir", 2006, give the
 * u^(1/w) form: an instance wins a bucket with probability w / sum(w);
 * Schindelhauer and Schomaker 2005 the equivalent -w/ln(u)), so the
 * guarantees hold exactly, not approximately: while the usable set and the
 * weights stay, a key keeps its instance; when one instance leaves, only
 * the buckets it won move; when one joins or its weight rises, buckets only
 * move onto it. Every answer is a pure function of the usable set and the
 * weights (never of the order of changes), so proxies sharing a state store
 * agree on every key.
 *
 * Why not Maglev (Envoy's default table): its table is rebuilt whole on
 * every change and moves some keys of instances that stayed; this keeps the
 * README's guarantee exactly. The price is balance: an instance's share of
 * the buckets varies by about sqrt(n / 65,536) of its share (0.5% at 2
 * instances, 5.4% at 200, 17.5% at 2,000: the most loaded of 2,000 has 1.59x
 * the mean), as if there were never more than 65,536 distinct keys.
 *
 * Cost: a pick reads one array entry. A join, leave or weight change of
 * one instance is one pass over the 65,536 buckets with one hash each (the
 * scores of weighted instances only where they could win). A bucket with no
 * winner yet (after a change too large to apply incrementally, or never
 * asked) is computed on its first pick, O(instances) once.
 */

export const BUCKET_BITS = 16
export const BUCKETS = 1 << BUCKET_BITS
const SHIFT = 32 - BUCKET_BITS
const EMPTY = 0xffff
/** Slots fit the Uint16 winners with EMPTY left over. */
export const MAX_STICKY_MEMBERS = EMPTY
/**
 * At most this many joins, leaves and weight changes are applied bucket by
 * bucket in one update (each a pass over the buckets, about 0.1-0.3 ms);
 * more at once (a version undrained, a mass recovery) clear the buckets, and
 * each is recomputed on its first pick.
 */
const MAX_PASSES = 8
/** Buckets emptied by leaves are recomputed at once up to this many candidate scores, else on first pick. */
const REFILL_BUDGET = 1 << 19
const INV_2_32 = 1 / 4294967296

/** The hash every key of bucket b is hashed as (precomputed: one read per score). */
const BUCKET_HASH = (() => {
  const h = new Uint32Array(BUCKETS)
  for (let b = 0; b < BUCKETS; b++) h[b] = fmix32((b ^ 0x5bd1e995) >>> 0)
  return h
})()

export function bucketOf(key: number): number {
  return key >>> SHIFT
}

/**
 * Score of an instance for a bucket hash: u^(1/w) in (0, 1). invWeight is
 * 1/w >= 1 (weights are relative to the version's largest, so w <= 1): a
 * weighted score is never above its u, so a candidate whose u does not beat
 * the best so far is skipped before the log and exp.
 */
function scoreAbove(h: number, seed: number, invWeight: number, floor: number): number {
  const u = (mix(h, seed) + 0.5) * INV_2_32
  if (invWeight === 1 || u < floor) return u
  return Math.exp(Math.log(u) * invWeight)
}

/**
 * Index of the instance that wins bucket hash h among `members` (holes and
 * `exclude` skipped), or -1. Ties (equal scores) go to the larger seed, so
 * the answer never depends on the order of the list.
 */
export function bucketWinner(
  h: number,
  members: readonly (Instance | undefined)[],
  invWeights: ArrayLike<number>,
  exclude: Instance | undefined,
): number {
  let best = -1
  let bestScore = -1
  let bestSeed = 0
  for (let i = 0; i < members.length; i++) {
    const m = members[i]
    if (m === undefined || m === exclude) continue
    const score = scoreAbove(h, m.seed, invWeights[i]!, bestScore)
    if (score > bestScore || (score === bestScore && m.seed > bestSeed)) {
      best = i
      bestScore = score
      bestSeed = m.seed
    }
  }
  return best
}

/** The sticky choice for a key by computing every instance's score (no table): for old tables and retries. */
export function stickyScan(
  key: number,
  usable: readonly Instance[],
  invWeights: ArrayLike<number>,
  exclude: Instance | undefined,
): Instance | undefined {
  const i = bucketWinner(BUCKET_HASH[key >>> SHIFT]!, usable, invWeights, exclude)
  return i < 0 ? undefined : usable[i]
}

/**
 * One version's bucket table. Tables are handed from one routing snapshot
 * to the next (`take`): the new snapshot applies the difference in place
 * and the old one's copy stops answering (`live` false; the old snapshot
 * then scans, with the same result for its own usable set).
 */
export class StickyBuckets {
  /** Slot -> instance; holes where instances left, reused by joins. */
  #members: (Instance | undefined)[] = []
  #invWeights: number[] = []
  #slots = new Map<Instance, number>()
  #free: number[] = []
  #count = 0
  #winner: Uint16Array | undefined
  #score: Float64Array | undefined
  #live = true

  /** The table for `usable` (aligned 1/weights), reusing `prev`'s work; `prev` stops answering. */
  static take(
    prev: StickyBuckets | undefined,
    usable: readonly Instance[],
    invWeights: ArrayLike<number>,
  ): StickyBuckets {
    const next = new StickyBuckets()
    if (prev !== undefined && prev.#live) {
      prev.#live = false
      next.#members = prev.#members
      next.#invWeights = prev.#invWeights
      next.#slots = prev.#slots
      next.#free = prev.#free
      next.#count = prev.#count
      next.#winner = prev.#winner
      next.#score = prev.#score
    }
    next.#sync(usable, invWeights)
    return next
  }

  /** Whether pick answers (false once handed on, or with more instances than slots). */
  get live(): boolean {
    return this.#live
  }

  /** The instance for a key. Only with two or more members and `live`. */
  pick(key: number): Instance {
    const b = key >>> SHIFT
    let s = this.#winner![b]!
    if (s === EMPTY) s = this.#fill(b)
    return this.#members[s]!
  }

  #fill(b: number): number {
    const s = bucketWinner(BUCKET_HASH[b]!, this.#members, this.#invWeights, undefined)
    if (s < 0) return EMPTY
    this.#winner![b] = s
    this.#score![b] = this.#scoreOf(b, s)
    return s
  }

  #scoreOf(b: number, s: number): number {
    return scoreAbove(BUCKET_HASH[b]!, this.#members[s]!.seed, this.#invWeights[s]!, 0)
  }

  #sync(usable: readonly Instance[], invWeights: ArrayLike<number>): void {
    if (usable.length > MAX_STICKY_MEMBERS) {
      this.#live = false
      return
    }
    const slots = this.#slots
    const joins: number[] = []
    /** Slots whose buckets must be recomputed (left, or weight fell). */
    const down: number[] = []
    /** Slots that may win buckets they do not hold (joined, or weight rose). */
    const up: number[] = []
    const seen = new Set<number>()
    for (let i = 0; i < usable.length; i++) {
      const s = slots.get(usable[i]!)
      if (s === undefined) {
        joins.push(i)
        continue
      }
      seen.add(s)
      const before = this.#invWeights[s]!
      const after = invWeights[i]!
      if (after > before) down.push(s)
      else if (after < before) up.push(s)
    }
    const leaves: number[] = []
    if (seen.size !== this.#count) for (const s of slots.values()) if (!seen.has(s)) leaves.push(s)
    const passes = joins.length + down.length + up.length + leaves.length
    if (passes === 0) return

    const winner = this.#winner
    const incremental = winner !== undefined && passes <= MAX_PASSES
    let emptied: number[] = []
    if (incremental && (leaves.length > 0 || down.length > 0)) emptied = this.#clear([...leaves, ...down])
    for (const s of leaves) {
      slots.delete(this.#members[s]!)
      this.#members[s] = undefined
      this.#free.push(s)
      this.#count--
    }
    for (let i = 0; i < usable.length; i++) {
      const s = slots.get(usable[i]!)
      if (s !== undefined) this.#invWeights[s] = invWeights[i]!
    }
    for (const i of joins) {
      const s = this.#free.pop() ?? this.#members.length
      this.#members[s] = usable[i]
      this.#invWeights[s] = invWeights[i]!
      slots.set(usable[i]!, s)
      this.#count++
      up.push(s)
    }
    if (winner === undefined) {
      // Allocated once two instances share the version; every bucket is computed on its first pick.
      if (this.#count >= 2) {
        this.#winner = new Uint16Array(BUCKETS).fill(EMPTY)
        this.#score = new Float64Array(BUCKETS)
      }
    } else if (!incremental) {
      winner.fill(EMPTY)
    } else {
      this.#raise(up)
      if (emptied.length * this.#count <= REFILL_BUDGET) for (const b of emptied) this.#fill(b)
    }
  }

  /** Empties the buckets the given slots hold; answers them. */
  #clear(slots: readonly number[]): number[] {
    const winner = this.#winner!
    const mark = new Uint8Array(this.#members.length + 1)
    for (const s of slots) mark[s] = 1
    const out: number[] = []
    for (let b = 0; b < BUCKETS; b++) {
      const s = winner[b]!
      if (s !== EMPTY && mark[s] === 1) {
        winner[b] = EMPTY
        out.push(b)
      }
    }
    return out
  }

  /** Slots that joined or whose weight rose take the buckets they now win; their own buckets get their new score. */
  #raise(slots: readonly number[]): void {
    if (slots.length === 0) return
    const winner = this.#winner!
    const score = this.#score!
    const members = this.#members
    for (const s of slots) {
      const seed = members[s]!.seed
      const invWeight = this.#invWeights[s]!
      for (let b = 0; b < BUCKETS; b++) {
        const w = winner[b]!
        if (w === EMPTY) continue
        const current = score[b]!
        const sc = scoreAbove(BUCKET_HASH[b]!, seed, invWeight, w === s ? 0 : current)
        if (w === s) score[b] = sc
        else if (sc > current || (sc === current && seed > members[w]!.seed)) {
          winner[b] = s
          score[b] = sc
        }
      }
    }
  }
}
