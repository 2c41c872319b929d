import { defineConfig } from 'vitest/config';

/** `npm run test:cluster`: ferry on a multi-service Temporal server with PostgreSQL and mTLS (scripts/cluster/). */
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 300_000,
    // the first run builds the Temporal server from source (minutes)
    hookTimeout: 1_200_000,
  },
});
