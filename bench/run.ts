import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { killAll } from '../test/support/processes.js';
import { installRuntime } from '../worker/runtime.js';
import type { ConcurrencySeries } from './cost.js';
import { BenchEnv } from './env.js';
import type { TransferHistories } from './history.js';
import { concurrencySvg, historyMarkdown, markdownTable, textTable } from './report.js';
import { GOALS, type BenchContext, type BenchMode, type BenchRow, type Goal } from './types.js';

/**
 * `npm run bench`: every goal of issue 12 as a row with ferry's figure, a baseline measured in the
 * same run, and their ratio. Prints the table, writes bench/results/latest.{json,md,svg} (and a
 * timestamped JSON). Options:
 *   --quick          smoke run: tiny sizes, few iterations (about a minute)
 *   --full           the sizes and counts (10,000 concurrent transfers; long)
 *   --only GOAL      one goal (repeatable, or comma-separated): cost, latency, history, datapath, scale, edc
 *   --scale N        concurrent transfers for the scale goal (default: quick 10, normal 200, full 10000)
 *   --out DIR        where the results go (default bench/results)
 *   --no-edc         skip the Eclipse EDC comparison even where Java and Maven are present
 */

const HERE = import.meta.dirname;

const BENCH_HELP = `Usage: npm run bench -- [--quick | --full] [--only GOAL[,GOAL]] [--scale N] [--out DIR] [--no-edc] [--json]

Measures every goal of the performance issue against baselines measured in the same run and
prints one table (goal, measure, ferry, baseline, ratio, unit, target); writes
bench/results/latest.{json,md,svg}.

  --quick       smoke run: tiny sizes, few iterations (about a minute)
  --full        the issue's sizes and counts (10,000 concurrent transfers; hours)
  --only GOAL   one goal (repeatable or comma-separated): ${GOALS.join(', ')}
  --scale N     concurrent transfers of the scale goal (quick 10, normal 200, full 10000)
  --out DIR     where the results go (default bench/results)
  --no-edc      skip the Eclipse EDC comparison (needs java and mvn otherwise)
  --json        print the JSON too`;

function options(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      scale: { type: 'string' },
      out: { type: 'string' },
      'no-edc': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(BENCH_HELP);
    process.exit(0);
  }
  if (values.quick && values.full) throw new Error('--quick and --full exclude each other');
  const only = (values.only ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const g of only) if (!(GOALS as readonly string[]).includes(g)) throw new Error(`--only ${g}: unknown goal; goals: ${GOALS.join(', ')}`);
  const scale = values.scale === undefined ? undefined : Number(values.scale);
  if (scale !== undefined && !(Number.isInteger(scale) && scale > 0)) throw new Error(`--scale must be a positive integer, got ${values.scale}`);
  const mode: BenchMode = values.quick ? 'quick' : values.full ? 'full' : 'normal';
  return {
    mode,
    goals: RUN_ORDER.filter((g) => !only.length || only.includes(g)),
    ...(scale ? { scale } : {}),
    out: path.resolve(values.out ?? path.join(HERE, 'results')),
    edc: !values['no-edc'],
    json: values.json,
  };
}

/** history first (its probe transfer sizes the cost goal's baseline), the Temporal goals together, the disk-heavy one after them. */
const RUN_ORDER: Goal[] = ['history', 'latency', 'cost', 'scale', 'datapath', 'edc'];

const skipped = (goal: Goal, why: string): BenchRow => ({ goal, measure: `${goal}: not measured`, ferry: null, baseline: null, ratio: null, unit: '', note: why });

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  installRuntime();
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const started = new Date();
  const root = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-'));
  const extras: Record<string, unknown> = {};
  const env = new BenchEnv(log);
  const rows: BenchRow[] = [];
  let stopping = false;
  const cleanup = async () => {
    killAll(); // worker processes of the scale goal, EDC's JVMs
    await env.shutdown().catch((e: unknown) => log(`shutdown: ${String(e)}`));
    await rm(root, { recursive: true, force: true });
  };
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  log(`ferry bench (${opts.mode}): ${opts.goals.join(', ')}; node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const goalCtx = async (goal: Goal): Promise<BenchContext> => {
    const tmpDir = path.join(root, goal);
    await mkdir(tmpDir, { recursive: true });
    return { mode: opts.mode, tmpDir, log: (m) => log(`[${goal}] ${m}`), attach: (k, v) => (extras[k] = v) };
  };
  const temporalGoals = new Set<Goal>(['history', 'latency', 'cost']);
  for (const goal of opts.goals) {
    // the shared Temporal cluster is done with once its goals are; the rest measure on a quiet machine
    if (!temporalGoals.has(goal) && env.started) await env.shutdown();
    const ctx = await goalCtx(goal);
    const t0 = performance.now();
    try {
      const produced = await runGoal(goal, ctx, env, opts, extras);
      rows.push(...(produced.length ? produced : [skipped(goal, 'the goal produced no rows')]));
    } catch (e) {
      log(`[${goal}] failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      rows.push(skipped(goal, `failed: ${e instanceof Error ? e.message : String(e)}`.slice(0, 500)));
    }
    log(`[${goal}] done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  await cleanup();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);

  const finished = new Date();
  const meta = {
    mode: opts.mode,
    goals: opts.goals,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    commit: gitCommit(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), loadavgAtEnd: os.loadavg(), node: process.version, platform: `${os.platform()} ${os.release()}` },
  };
  // the table in the order of goals
  rows.sort((a, b) => GOALS.indexOf(a.goal) - GOALS.indexOf(b.goal));
  console.log(textTable(rows));
  await mkdir(opts.out, { recursive: true });
  const json = JSON.stringify({ ...meta, rows, extras }, null, 2);
  const concurrency = extras.concurrency as ConcurrencySeries | undefined;
  const history = extras.history as TransferHistories | undefined;
  const mdText = [
    `# ferry bench (${opts.mode}), ${meta.startedAt}`,
    '',
    `Commit ${meta.commit ?? 'unknown'}; ${meta.machine.cpus} CPUs (${meta.machine.model ?? '?'}), node ${meta.machine.node}; load average at the end ${meta.machine.loadavgAtEnd.map((l) => l.toFixed(2)).join(' ')}. Every baseline was measured in this run.`,
    '',
    markdownTable(rows),
    ...(concurrency ? ['', '![latency and throughput against concurrency](latest.svg)'] : []),
    ...(history ? ['', historyMarkdown(history)] : []),
    '',
  ].join('\n');
  const stamp = meta.startedAt.replace(/[:.]/g, '-');
  await writeFile(path.join(opts.out, 'latest.json'), json);
  await writeFile(path.join(opts.out, `${stamp}-${opts.mode}.json`), json);
  await writeFile(path.join(opts.out, 'latest.md'), mdText);
  if (concurrency) await writeFile(path.join(opts.out, 'latest.svg'), concurrencySvg(concurrency, `ferry bench (${opts.mode}, ${meta.startedAt.slice(0, 16)}): a tiny File push vs minimal workflows`));
  log(`results in ${opts.out}: latest.json, latest.md${concurrency ? ', latest.svg' : ''}, ${stamp}-${opts.mode}.json`);
  if (opts.json) console.log(json);
}

async function runGoal(goal: Goal, ctx: BenchContext, env: BenchEnv, opts: ReturnType<typeof options>, extras: Record<string, unknown>): Promise<BenchRow[]> {
  switch (goal) {
    case 'history':
      return (await import('./history.js')).run(ctx, env);
    case 'latency':
      return (await import('./latency.js')).run(ctx, env);
    case 'cost':
      return (await import('./cost.js')).run(ctx, env);
    case 'scale':
      return (await import('./scale.js')).run(ctx, opts.scale);
    case 'datapath':
      return datapath(ctx);
    case 'edc':
      if (!opts.edc) return [skipped('edc', 'skipped: --no-edc')];
      return (await import('./edc.js')).run(ctx, extras.latency as never);
  }
}

/** bench/datapath.ts (File push vs cp, HttpData vs curl, RSS) when it exists: `export async function run(ctx): Promise<BenchRow[]>`. */
async function datapath(ctx: BenchContext): Promise<BenchRow[]> {
  if (!existsSync(path.join(HERE, 'datapath.ts'))) return [skipped('datapath', 'skipped: bench/datapath.ts is not there (the data-path measures are not written yet)')];
  const specifier = './datapath.js'; // not a literal: the module may be absent, and then this is never reached
  const mod = (await import(specifier)) as { run?: (ctx: BenchContext) => Promise<BenchRow[]>; default?: (ctx: BenchContext) => Promise<BenchRow[]> };
  const fn = mod.run ?? mod.default;
  if (typeof fn !== 'function') return [skipped('datapath', 'skipped: bench/datapath.ts exports no run(ctx) function')];
  return fn(ctx);
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: HERE, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return undefined;
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
