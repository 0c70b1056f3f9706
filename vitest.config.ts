import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each file starts its own worker pools; forks keep them apart.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // `npm run coverage`: the main thread's code, which the tests import from the build (dist/src),
    // mapped back to src/ by its source maps. The workers' code runs in worker threads, which
    // V8's coverage of the test process does not see.
    coverage: {
      provider: 'v8',
      include: ['dist/src/**/*.js'],
      reporter: ['text', 'json-summary'],
      reportOnFailure: true,
    },
  },
});
