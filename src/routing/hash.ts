/**
 * Hashing for sticky routing. A sticky key is hashed once per request
 * (FNV-1a over UTF-16 code units, then a murmur3 finaliser for avalanche);
 * each candidate (version or instance) has a fixed 32-bit seed, and
 * `mix(keyHash, seed)` gives an independent-looking uniform draw per
 * (key, candidate) pair for rendezvous hashing.
 */

export function hashString(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

/** murmur3's 32-bit finaliser: every input bit affects every output bit. */
export function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export function mix(keyHash: number, seed: number): number {
  return fmix32((keyHash ^ Math.imul(seed, 0x9e3779b9)) + seed)
}

const INV_2_32 = 1 / 4294967296

/**
 * Weighted rendezvous score (Schindelhauer & Schomaker, "Weighted distributed
 * hash tables", 2005): score = -w / ln(u) with u uniform in (0,1). The
 * candidate with the highest score wins. A candidate wins a key with
 * probability w / sum(w); raising one weight only raises that candidate's
 * scores, so keys only ever move onto it, and removing a candidate moves
 * only the keys it held.
 */
export function rendezvousScore(keyHash: number, seed: number, weight: number): number {
  const u = (mix(keyHash, seed) + 0.5) * INV_2_32
  return -weight / Math.log(u)
}
