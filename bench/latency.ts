import type { BenchEnv, FerryPair } from './env.js';
import { median, percentile, ratio } from './stats.js';
import type { BenchContext, BenchMode, BenchRow } from './types.js';

/**
 * A tiny File push from request to COMPLETED, one at a time: in-cluster (two connectors on one
 * cluster) and over DSP HTTP (two deployments, each in its own namespace). Latency is what a client
 * sees: from the start call to the consumer process's result. The phases come from the consumer's
 * status history (workflow time, same clock). Baseline: a minimal one-activity workflow's start → result,
 * sampled alternately with ferry's so both see the same load.
 */

export const PHASES = ['request→INITIAL', 'INITIAL→REQUESTED', 'REQUESTED→STARTED', 'STARTED→COMPLETED', 'COMPLETED→result'] as const;
type Phase = (typeof PHASES)[number];

export interface LatencySample {
  ms: number;
  phases: Partial<Record<Phase, number>>;
}

export const LATENCY_SAMPLES: Record<BenchMode, number> = { quick: 3, normal: 40, full: 200 };

let seq = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${(seq++).toString(36)}`;

/** One transfer, timed; then (untimed) its other workflows' ends and its status history. */
export async function timedTransfer(pair: FerryPair, prefix: string): Promise<LatencySample> {
  const pid = uid(prefix);
  const wall0 = Date.now();
  const t0 = performance.now();
  await pair.start(pid);
  const { state } = await pair.consumer.ferry.result('consumer', pid);
  const ms = performance.now() - t0;
  const wall1 = wall0 + ms;
  if (state !== 'COMPLETED') throw new Error(`transfer ${pid} (${pair.name}) ended ${state}`);
  await pair.awaitAll(pid);
  const { history } = await pair.consumer.ferry.status('consumer', pid);
  const at = (s: string) => {
    const h = history.find((x) => x.state === s);
    return h ? Date.parse(h.at) : NaN;
  };
  const phases: LatencySample['phases'] = {};
  const put = (p: Phase, v: number) => Number.isFinite(v) && (phases[p] = v);
  put('request→INITIAL', at('INITIAL') - wall0);
  put('INITIAL→REQUESTED', at('REQUESTED') - at('INITIAL'));
  put('REQUESTED→STARTED', at('STARTED') - at('REQUESTED'));
  put('STARTED→COMPLETED', at('COMPLETED') - at('STARTED'));
  put('COMPLETED→result', wall1 - at('COMPLETED'));
  return { ms, phases };
}

export async function timedMinimal(env: BenchEnv): Promise<number> {
  const baseline = await env.baseline();
  const t0 = performance.now();
  await baseline.minimal(uid('lat-minimal'));
  return performance.now() - t0;
}

/** `n` samples of ferry and of the baseline, alternating, after one unrecorded warm-up of each. */
export async function sampleLatency(env: BenchEnv, pair: FerryPair, n: number, log: (m: string) => void): Promise<{ ferry: LatencySample[]; minimal: number[] }> {
  await timedTransfer(pair, `lat-warm-${pair.name}`);
  await timedMinimal(env);
  const ferry: LatencySample[] = [];
  const minimal: number[] = [];
  for (let i = 0; i < n; i++) {
    ferry.push(await timedTransfer(pair, `lat-${pair.name}`));
    minimal.push(await timedMinimal(env));
    if ((i + 1) % 10 === 0) log(`  ${pair.name}: ${i + 1}/${n}`);
  }
  return { ferry, minimal };
}

export function latencyRows(label: string, targets: { p50: string; p99?: string }, s: { ferry: LatencySample[]; minimal: number[] }): BenchRow[] {
  const ms = s.ferry.map((x) => x.ms);
  const base = { goal: 'latency' as const, unit: 'ms' };
  const note = (p: string) =>
    `${ms.length} transfers one at a time; baseline: a minimal one-activity workflow start → result (${p}), alternating with ferry's; ratio = ferry/baseline`;
  const rows: BenchRow[] = [
    { ...base, measure: `${label}, request → COMPLETED, p50`, ferry: median(ms), baseline: median(s.minimal), ratio: ratio(median(ms), median(s.minimal)), target: targets.p50, note: note('p50') },
    { ...base, measure: `${label}, request → COMPLETED, p99`, ferry: percentile(ms, 99), baseline: percentile(s.minimal, 99), ratio: ratio(percentile(ms, 99), percentile(s.minimal, 99)), ...(targets.p99 ? { target: targets.p99 } : {}), note: note('p99') },
  ];
  for (const phase of PHASES) {
    const xs = s.ferry.map((x) => x.phases[phase]).filter((v): v is number => v !== undefined);
    rows.push({
      ...base,
      measure: `${label}, phase ${phase}, p50`,
      ferry: xs.length ? median(xs) : null,
      baseline: null,
      ratio: null,
      note: xs.length ? 'from the consumer status history timestamps (workflow task times); request and result are client clock' : 'the consumer history lacks one of the two states',
    });
  }
  return rows;
}

export async function run(ctx: BenchContext, env: BenchEnv): Promise<BenchRow[]> {
  const n = LATENCY_SAMPLES[ctx.mode];
  ctx.log(`latency: ${n} tiny pushes one at a time, in-cluster, then over DSP`);
  const inCluster = await sampleLatency(env, await env.inCluster(), n, ctx.log);
  const dsp = await sampleLatency(env, await env.dsp(), n, ctx.log);
  ctx.attach('latency', { inCluster, dsp });
  return [
    ...latencyRows('tiny push in-cluster', { p50: '≤ 130 ms', p99: '≤ 400 ms' }, inCluster),
    ...latencyRows('tiny push over DSP HTTP', { p50: '≤ 250 ms' }, dsp),
  ];
}
