import { cpuSampler, devServerPid, type CpuSample } from './cpu.js';
import type { BenchEnv } from './env.js';
import { WORKFLOW_LABELS, type WorkflowRole } from './history.js';
import { median, ratio } from './stats.js';
import type { BenchContext, BenchMode, BenchRow } from './types.js';

/**
 * The cost of one complete transfer (both TransferProcesses, both DataFlows closed) in
 * minimal-workflow equivalents of throughput. Closed loop: `concurrency` items always in flight,
 * each lane starting its next item when its last one ends; after a warm-up (every lane has finished
 * one item) the completions in a fixed window give the throughput. The three methods take turns,
 * in reversed order each round, on the same server and workers:
 *   ferry    a tiny in-cluster File push, until all four of its workflows have closed
 *   minimal  one minimal one-activity workflow
 *   four     four minimal workflows at once, each with as many activities and local activities as
 *            the ferry workflow it stands for had in this run's probe transfer
 */

interface Plan {
  levels: number[];
  windowMs: number;
  rounds: number;
}
export const COST_PLAN: Record<BenchMode, Plan> = {
  quick: { levels: [2, 5], windowMs: 2_000, rounds: 1 },
  normal: { levels: [1, 20, 100], windowMs: 15_000, rounds: 2 },
  full: { levels: [1, 20, 100], windowMs: 60_000, rounds: 3 },
};
/** The goal's concurrencies; the others are measured for the plot. */
const GOAL_LEVELS = [20, 100];

export interface LoopResult {
  throughput: number;
  completed: number;
  latencies: number[];
  errors: number;
  /** CPU milliseconds spent in the window (server, bench process), when a sampler was given. */
  cpu?: CpuSample;
}

/** Runs `runOne` in a closed loop of `concurrency` lanes; throughput over `windowMs` after the warm-up. */
export async function closedLoop(concurrency: number, windowMs: number, runOne: (i: number) => Promise<void>, cpu?: () => CpuSample): Promise<LoopResult> {
  let cpuStart: CpuSample | undefined;
  let cpuEnd: CpuSample | undefined;
  let phase: 'warm' | 'measure' | 'stop' = 'warm';
  const warmLanes = new Set<number>();
  let windowStart = 0;
  let windowEnd = Infinity;
  let next = 0;
  let errors = 0;
  let lastError: unknown;
  const latencies: number[] = [];
  let timer: NodeJS.Timeout | undefined;
  const lane = async (id: number) => {
    while (phase !== 'stop') {
      const t0 = performance.now();
      try {
        await runOne(next++);
      } catch (e) {
        errors++;
        lastError = e;
        if (errors > Math.max(10, concurrency)) phase = 'stop';
      }
      const t1 = performance.now();
      if (phase === 'warm') {
        warmLanes.add(id);
        if (warmLanes.size === concurrency) {
          phase = 'measure';
          windowStart = t1;
          cpuStart = cpu?.();
          timer = setTimeout(() => {
            phase = 'stop';
            windowEnd = performance.now();
            cpuEnd = cpu?.();
          }, windowMs);
        }
      } else if (t1 >= windowStart && t1 <= windowEnd) {
        latencies.push(t1 - t0);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, id) => lane(id)));
  clearTimeout(timer);
  if (!Number.isFinite(windowEnd)) throw new Error(`closed loop stopped after ${errors} errors; last: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
  return {
    throughput: latencies.length / ((windowEnd - windowStart) / 1000),
    completed: latencies.length,
    latencies,
    errors,
    ...(cpuStart && cpuEnd ? { cpu: { server: cpuEnd.server - cpuStart.server, bench: cpuEnd.bench - cpuStart.bench } } : {}),
  };
}

export type Method = 'ferry' | 'minimal' | 'four';
export const METHOD_LABELS: Record<Method, string> = {
  ferry: 'ferry transfer (4 workflows)',
  minimal: 'minimal 1-activity workflow',
  four: "4 minimal workflows, ferry's activities",
};

export interface ConcurrencySeries {
  levels: number[];
  /** method → per level: median throughput (items/s) and median latency of an item (ms). */
  series: Record<Method, { throughput: number[]; p50: number[]; cpuMs?: { server: number; bench: number; total: number }[]; errors: number }>;
}

export async function run(ctx: BenchContext, env: BenchEnv): Promise<BenchRow[]> {
  const plan = COST_PLAN[ctx.mode];
  const [pair, baseline, probe] = [await env.inCluster(), await env.baseline(), await env.probe()];
  const cluster = await env.cluster();
  const cpu = cpuSampler(devServerPid(cluster.temporal.address.split(':').pop()!));
  const roles = Object.keys(WORKFLOW_LABELS) as WorkflowRole[];
  const counts = roles.map((r) => ({ activities: probe.workflows[r].activities, localActivities: probe.workflows[r].localActivities }));
  const countText = roles.map((r, i) => `${counts[i]!.activities}+${counts[i]!.localActivities}L`).join(', ');
  let seq = 0;
  const id = (p: string) => `${p}-${Date.now().toString(36)}-${(seq++).toString(36)}`;
  const runners: Record<Method, () => Promise<void>> = {
    async ferry() {
      const pid = id('cost');
      await pair.start(pid);
      const state = await pair.awaitAll(pid);
      if (state !== 'COMPLETED') throw new Error(`transfer ${pid} ended ${state}`);
    },
    minimal: () => baseline.minimal(id('cost-min'), seq),
    four: () => baseline.four(id('cost-four'), counts),
  };
  const methods: Method[] = ['minimal', 'four', 'ferry'];
  const samples = new Map<string, LoopResult[]>();
  for (const c of plan.levels) {
    for (let round = 0; round < plan.rounds; round++) {
      for (const m of round % 2 ? [...methods].reverse() : methods) {
        const r = await closedLoop(c, plan.windowMs, runners[m], cpu);
        ctx.log(`  cost: concurrency ${c}, round ${round + 1}/${plan.rounds}, ${m}: ${r.throughput.toFixed(2)}/s (${r.completed} in window, ${r.errors} errors)`);
        samples.set(`${m}@${c}`, [...(samples.get(`${m}@${c}`) ?? []), r]);
      }
    }
  }
  const at = (m: Method, c: number) => samples.get(`${m}@${c}`)!;
  const tput = (m: Method, c: number) => median(at(m, c).map((r) => r.throughput));
  const p50 = (m: Method, c: number) => median(at(m, c).flatMap((r) => r.latencies));
  const errs = (m: Method, c: number) => at(m, c).reduce((s, r) => s + r.errors, 0);
  /** CPU milliseconds per completed item (server, bench process), summed over the rounds' windows. */
  const cpuPer = (m: Method, c: number) => {
    const rs = at(m, c).filter((r) => r.cpu && r.completed > 0);
    const n = rs.reduce((s, r) => s + r.completed, 0);
    const server = rs.reduce((s, r) => s + r.cpu!.server, 0) / n;
    const bench = rs.reduce((s, r) => s + r.cpu!.bench, 0) / n;
    return { server, bench, total: server + bench };
  };
  const series = Object.fromEntries(
    (['ferry', 'minimal', 'four'] as Method[]).map((m) => [
      m,
      { throughput: plan.levels.map((c) => tput(m, c)), p50: plan.levels.map((c) => p50(m, c)), cpuMs: plan.levels.map((c) => cpuPer(m, c)), errors: plan.levels.reduce((s, c) => s + errs(m, c), 0) },
    ]),
  ) as ConcurrencySeries['series'];
  ctx.attach('concurrency', { levels: plan.levels, series } satisfies ConcurrencySeries);

  const rows: BenchRow[] = [];
  for (const c of plan.levels) {
    const ferry = tput('ferry', c);
    const errors = errs('ferry', c) ? `; ${errs('ferry', c)} ferry transfers failed` : '';
    const goal = GOAL_LEVELS.includes(c);
    rows.push({
      goal: 'cost',
      measure: `throughput at concurrency ${c}: transfers vs minimal 1-activity workflows`,
      ferry,
      baseline: tput('minimal', c),
      ratio: ratio(tput('minimal', c), ferry),
      unit: '/s',
      ...(goal ? { target: 'ratio ≤ 3' } : {}),
      note: `ratio = minimal workflows/s ÷ transfers/s: one transfer's cost in minimal-workflow equivalents (lower is better); medians of ${plan.rounds} × ${plan.windowMs / 1000} s windows${errors}`,
    });
    rows.push({
      goal: 'cost',
      measure: `throughput at concurrency ${c}: transfers vs sets of 4 minimal workflows with ferry's activities`,
      ferry,
      baseline: tput('four', c),
      ratio: ratio(tput('four', c), ferry),
      unit: '/s',
      note: `baseline: 4 workflows at once with ${countText} activities (consumer TP, consumer DF, provider TP, provider DF; L = local) as this run's probe transfer had (CPU per set ${cpuPer('four', c).total.toFixed(0)} ms); ratio = sets/s ÷ transfers/s (lower is better)`,
    });
    const [fc, mc] = [cpuPer('ferry', c), cpuPer('minimal', c)];
    rows.push({
      goal: 'cost',
      measure: `CPU time at concurrency ${c}: per transfer vs per minimal 1-activity workflow`,
      ferry: fc.total,
      baseline: mc.total,
      ratio: ratio(fc.total, mc.total),
      unit: 'CPU ms',
      note: `Temporal server + bench process (workers, workflow threads, client) over the same windows; ferry: server ${fc.server.toFixed(0)} ms + workers/client ${fc.bench.toFixed(0)} ms, minimal: ${mc.server.toFixed(1)} + ${mc.bench.toFixed(1)} ms; ratio = ferry ÷ minimal: the cost in minimal-workflow equivalents by CPU, less sensitive than throughput to other load on the machine (lower is better)`,
    });
  }
  return rows;
}
