/**
 * What every part of `npm run bench` shares: the row each measure reports and the context a part runs in.
 *
 * A part (bench/cost.ts, bench/latency.ts, bench/datapath.ts, …) exports
 *   `export async function run(ctx: BenchContext): Promise<BenchRow[]>`
 * and bench/run.ts prints its rows in the table and writes them to bench/results/.
 */

/** The goals of issue 12; `--only <goal>` runs one of them. */
export const GOALS = ['cost', 'latency', 'history', 'datapath', 'scale', 'edc'] as const;
export type Goal = (typeof GOALS)[number];

export interface BenchRow {
  /** Which goal of issue 12 the row measures. */
  goal: Goal;
  /** What was measured, in words (the same words every run, so runs compare). */
  measure: string;
  /** ferry's figure; null when it could not be measured (the note says why). */
  ferry: number | null;
  /** The baseline measured in the same run (null when the measure has none). */
  baseline: number | null;
  /**
   * ferry relative to the baseline, in the direction the measure states (its note says which way is
   * better); null without a baseline.
   */
  ratio: number | null;
  /** Unit of `ferry` and `baseline` (e.g. `ms`, `transfers/s`, `events`, `MB/s`, `MiB`). */
  unit: string;
  /** The goal's target, as issue 12 words it (e.g. `ratio ≤ 3`, `≤ 130 ms`). */
  target?: string;
  /** What the baseline is, how to read the ratio, and anything that qualifies the figure. */
  note?: string;
}

export type BenchMode = 'quick' | 'normal' | 'full';

export interface BenchContext {
  /** quick: a smoke run (tiny sizes, few iterations, about a minute); full: the sizes and counts. */
  mode: BenchMode;
  /** A scratch directory for this part, removed after the run. */
  tmpDir: string;
  /** Progress lines (to stderr, so stdout stays the table). */
  log(message: string): void;
  /** Extra results a part wants in the JSON and markdown (breakdowns, series for the plot). */
  attach(key: string, value: unknown): void;
}
