import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

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
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Integration tests run real servers under load: one file at a time keeps them from
          // competing for the 2 cores CI has. Two at a time was tried for the files that assert
          // no timing: they are CPU-bound (spawned CLIs, unpaced load loops that run as long as
          // the test does), and two at a time on 2 cores took longer than one after the other.
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
    // In CI a JSON report lets .ci/run print the plain 'N passed, N failed' closing line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-artifacts/vitest.json' }]] : ['default'],
  },
})
