import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests run real servers under load: one file at a time keeps
    // them from competing for the 2 cores CI has.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // expect.poll waits on real servers and processes: up to 10 s, checking every 20 ms.
    expect: { poll: { timeout: 10_000, interval: 20 } },
    // In CI a JSON report lets .ci/run print the plain 'N passed, N failed' closing line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-artifacts/vitest.json' }]] : ['default'],
  },
})
