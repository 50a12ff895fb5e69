import type { Instance } from '../routing/instance.js'

export interface PeerOptions {
  /** How often the sweep compares the instances of each version. */
  intervalMs: number
  /** Requests an instance needs in an interval to be judged or to count as a peer. */
  minRequests: number
  /** Percentage points above the failure rate of its peers (pooled) that make an instance an outlier. */
  abovePeersPercent: number
}

/** One instance found failing clearly more than the rest of its version in one interval. */
export interface PeerOutlier {
  instance: Instance
  /** Its failure rate in the interval, and its peers' (0..1). */
  rate: number
  peersRate: number
}

/**
 * The instances of one version that failed clearly more than their peers in
 * the interval just ended (counts in `windowRequests`/`windowFailures`),
 * worst first. Only instances not already ejected and with `minRequests`
 * take part, and at least two must: a lone instance has no peers, and a
 * fault that hits every instance alike leaves every rate near its peers'.
 * Envoy's failure-percentage and success-rate modes judge a host against a
 * fixed threshold or the cluster's spread over at least 5 hosts; versions
 * here often have 2 or 3 instances, so each is compared with the pooled
 * rate of the others.
 */
export function peerOutliers(instances: readonly Instance[], opts: PeerOptions): PeerOutlier[] {
  let requests = 0
  let failures = 0
  let judged = 0
  for (const i of instances) {
    if (i.ejectedUntil !== 0 || i.windowRequests < opts.minRequests) continue
    judged++
    requests += i.windowRequests
    failures += i.windowFailures
  }
  if (judged < 2) return []
  const out: PeerOutlier[] = []
  const margin = opts.abovePeersPercent / 100
  for (const i of instances) {
    if (i.ejectedUntil !== 0 || i.windowRequests < opts.minRequests) continue
    const rate = i.windowFailures / i.windowRequests
    const peersRate = (failures - i.windowFailures) / (requests - i.windowRequests)
    // A tolerance, so 30 % against 10 % is 20 points above in floating point too.
    if (rate - peersRate >= margin - 1e-9) out.push({ instance: i, rate, peersRate })
  }
  return out.sort((a, b) => b.rate - a.rate)
}
