import type { Parameters as FcParameters } from 'fast-check';

/**
 * fast-check parameters of every property test: a fixed seed per run, printed with any failure
 * (fast-check reports seed and path to replay it). `FERRY_FUZZ_RUNS=10000 npm test` searches
 * longer; `FERRY_FUZZ_SEED=<n>` replays a run.
 */
export function fuzzParams<T>(runs = 100): FcParameters<T> {
  const scale = Number(process.env.FERRY_FUZZ_RUNS ?? '') || undefined;
  const seed = Number(process.env.FERRY_FUZZ_SEED ?? '') || 20_250_101;
  return { numRuns: scale ?? runs, seed, verbose: 1, endOnFailure: true };
}
