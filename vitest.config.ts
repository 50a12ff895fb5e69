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
        // Pure code, no sockets: both cores at once, before any integration file starts.
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Integration tests run real servers under load: one file at a time keeps
          // them from competing for the 2 cores CI has.
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
    // In CI a JSON report lets .ci/run print the plain 'N passed, N failed' closing line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-artifacts/vitest.json' }]] : ['default'],
  },
})
