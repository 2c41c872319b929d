import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // a multi-service Temporal server of its own: `npm run test:cluster` (vitest.cluster.config.ts)
    exclude: ['test/cluster/**', '**/node_modules/**'],
    // Integration files each run a real Temporal dev server and workers: one file at a time on 2 cores.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
