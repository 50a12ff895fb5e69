import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

/**
 * Integration files that may run two at a time (the rule is in the project that runs them).
 * Every other integration file runs alone.
 */
const PARALLEL = [
  'access-log',
  'admin-browser-guard',
  'admin-cross-origin',
  'cli-demo',
  'cli-pipelines',
  'cli-serve',
  'cli-validate',
  'config-examples',
  'ctl',
  'ctl-watch',
  'discovery-runtime',
  'kubernetes-manifests',
  'metrics-promtool',
  'mirror-compare',
  'ops-monitoring',
  'proxy-bodyless',
  'proxy-graceful-stop',
  'proxy-headers',
  'proxy-pipelining',
  'proxy-request-target',
  'proxy-split',
  'proxy-trailers',
  'request-id',
  'rollout-control',
  'rollout-gates',
  'rollout-gates-restart',
  'state-file-crash',
  'state-file-restart',
  'state-file-rollout',
  'status-page',
  'websocket-relay',
  'websocket-relay-fallback',
].map((name) => `test/integration/${name}.test.ts`)

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // expect.poll waits on real servers and processes: up to 10 s, checking every 20 ms.
    expect: { poll: { timeout: 10_000, interval: 20 } },
    // One module graph per worker instead of one per file: importing src/ again for every
    // file cost more than a minute of the run. No file relies on a fresh module: every
    // proxy, store and registry is built per test and stopped by it.
    isolate: false,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // Pure code, no sockets: every core at once, before any integration file starts.
          // vitest's own default (cores - 1) ran them one at a time on the 2 cores CI has.
          maxWorkers: availableParallelism(),
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration-parallel',
          include: PARALLEL,
          globalSetup: ['test/helpers/build-setup.ts'],
          // Two files at a time: these wait on timers, processes, browsers and servers more than
          // they compute, and every wait is on a condition with seconds to spare. None asserts an
          // upper bound on a delay, a share of traffic measured over time or a lease, and none
          // configures a health probe, upstream or gate timeout short enough (under a second) for
          // a busy core to trip; a slower run is all the other file can cause.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          exclude: PARALLEL,
          globalSetup: ['test/helpers/build-setup.ts'],
          // Latency bounds, timeouts, shares measured under load, leases: one file at a time, so
          // that no other file competes for the 2 cores CI has. A new integration file belongs
          // here unless it meets the rule of the project above.
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
    ],
    // In CI a JSON report lets .ci/run print the plain 'N passed, N failed' closing line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-artifacts/vitest.json' }]] : ['default'],
  },
})
