import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { FerryClient } from '../src/client.js';
import { inClusterAddress } from '../src/ids.js';
import { ferryDataConverter } from '../src/codec.js';
import { Keyring, KEY_VARIABLES } from '../src/keys.js';
import { bundle } from '../worker/bundle.js';
import { startDevServer } from '../worker/devServer.js';
import { killAll, spawnWorker } from '../test/support/processes.js';
import { makeAsset } from '../test/support/transfers.js';
import * as baselineActivities from './baseline/activities.js';
import { pool, ratio } from './stats.js';
import type { BenchContext, BenchMode, BenchRow } from './types.js';

/**
 * Many concurrent STARTED transfers: N HttpData pulls (a pull stays STARTED until someone ends it)
 * started at once on one control-plane and one data-plane worker per side, each worker its own OS
 * process as deployed. Measures the time until all 2N TransferProcesses (both sides) are STARTED,
 * the time to suspend them all (N suspend commands at the consumer; until all 2N are SUSPENDED),
 * and each worker's resident memory. Progress is read from visibility (the FerryTransferState
 * search attribute), so counting adds no load to the workers.
 * Baseline: N minimal one-activity workflows started at once on the same server, until all completed.
 */

export const SCALE_COUNT: Record<BenchMode, number> = { quick: 10, normal: 200, full: 10_000 };
/** How long each phase may take before the bench reports how far it got. */
const DEADLINE_MS: Record<BenchMode, number> = { quick: 120_000, normal: 600_000, full: 1_800_000 };
/** Client calls in flight at once while starting or suspending (a burst, bounded so the client itself is not the limit). */
const CLIENT_CONCURRENCY = 100;

const WORKERS = ['consumer-cp', 'provider-cp', 'consumer-dp', 'provider-dp'] as const;
type WorkerName = (typeof WORKERS)[number];
const WORKER_LABELS: Record<WorkerName, string> = {
  'consumer-cp': 'consumer control-plane worker',
  'provider-cp': 'provider control-plane worker',
  'consumer-dp': 'consumer data-plane worker',
  'provider-dp': 'provider data-plane worker',
};

/** VmRSS of a process in MiB (Linux), or NaN. */
export function rssMiB(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Polls `count` four times a second until it reaches `target` or the deadline passes; the time taken and the last count. */
async function waitForCount(count: () => Promise<number>, target: number, deadlineMs: number, onTick: (n: number) => void): Promise<{ ms: number; reached: number }> {
  const t0 = performance.now();
  let reached = 0;
  for (;;) {
    reached = await count().catch(() => reached);
    onTick(reached);
    if (reached >= target || performance.now() - t0 > deadlineMs) return { ms: performance.now() - t0, reached };
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function run(ctx: BenchContext, countOverride?: number): Promise<BenchRow[]> {
  const n = countOverride ?? SCALE_COUNT[ctx.mode];
  const deadline = DEADLINE_MS[ctx.mode];
  ctx.log(`scale: ${n} pulls at once on 4 worker processes (deadline ${deadline / 1000} s per phase)`);
  const codec = Keyring.generate('scale-codec');
  const dataConverter = ferryDataConverter(codec);
  const env = await startDevServer({ dataConverter });
  const children: Partial<Record<WorkerName, ChildProcess>> = {};
  const samples: Record<WorkerName, { idle: number; peak: number; started: number; suspended: number }> = Object.fromEntries(
    WORKERS.map((w) => [w, { idle: NaN, peak: NaN, started: NaN, suspended: NaN }]),
  ) as never;
  const sample = (phase: 'idle' | 'started' | 'suspended' | 'peak') => {
    for (const w of WORKERS) {
      const v = rssMiB(children[w]?.pid);
      const s = samples[w];
      if (phase !== 'peak') s[phase] = v;
      if (Number.isFinite(v)) s.peak = Number.isFinite(s.peak) ? Math.max(s.peak, v) : v;
    }
  };
  const sampler = setInterval(() => sample('peak'), 1000);
  let baselineWorkers: Worker[] = [];
  try {
    const temporal = { address: env.connection.options.address!, namespace: 'default' };
    const asset = makeAsset(ctx.tmpDir, 'provider/asset.bin', 1024);
    const pull = ['HttpData-PULL'];
    const configs: Record<WorkerName, unknown> = {
      'consumer-cp': { connectorId: 'consumer', temporal, dataPlanes: [{ id: 'consumer-dp', transferTypes: pull }] },
      'provider-cp': { connectorId: 'provider', temporal, dataPlanes: [{ id: 'provider-dp', transferTypes: pull }], assets: { asset: { endpointType: 'File', endpoint: asset.file } }, agreements: { scale: { assetId: 'asset', counterparty: 'consumer' } } },
      'consumer-dp': { instanceId: 'consumer-dp', temporal, fileRoot: ctx.tmpDir, provisioners: [] },
      'provider-dp': { instanceId: 'provider-dp', temporal, fileRoot: ctx.tmpDir, provisioners: [], publicApi: { host: '127.0.0.1', port: 0 } },
    };
    // the keys each worker process reads from its environment, as deployed
    const keyEnv: Record<WorkerName, Record<string, string>> = {
      'consumer-cp': { [KEY_VARIABLES.codec]: codec.serialize() },
      'provider-cp': { [KEY_VARIABLES.codec]: codec.serialize() },
      'consumer-dp': { [KEY_VARIABLES.codec]: codec.serialize() },
      'provider-dp': { [KEY_VARIABLES.codec]: codec.serialize(), [KEY_VARIABLES.edr]: Keyring.generate('scale-edr').serialize() },
    };
    await Promise.all(
      WORKERS.map(async (w) => {
        const file = path.join(ctx.tmpDir, `${w}.json`);
        writeFileSync(file, JSON.stringify(configs[w]));
        children[w] = await spawnWorker(w.endsWith('-cp') ? 'controlPlaneWorker' : 'dataPlaneWorker', file, { env: keyEnv[w], timeoutMs: 300_000 });
      }),
    );
    sample('idle');
    const client = env.client;
    const ferry = new FerryClient(client);
    const pids = Array.from({ length: n }, (_, i) => `scale-${i}`);
    const count = (state: string) => () => client.workflow.count(`FerryTransferType = 'HttpData-PULL' AND FerryTransferState = '${state}'`).then((r) => r.count);
    const progress = (what: string) => {
      let last = -1;
      return (k: number) => {
        if (k !== last && (k === 2 * n || Math.floor(k / Math.max(1, n / 5)) !== Math.floor(last / Math.max(1, n / 5)))) ctx.log(`  ${what}: ${k}/${2 * n}`);
        last = k;
      };
    };

    // start all
    const t0 = performance.now();
    let startErrors = 0;
    await pool(pids, CLIENT_CONCURRENCY, (processId) =>
      ferry
        .startTransfer({ connectorId: 'consumer', processId, counterpartyAddress: inClusterAddress('provider'), agreementId: 'scale', assetId: 'asset', transferType: 'HttpData-PULL' })
        .catch(() => void startErrors++),
    );
    const startCalls = performance.now() - t0;
    const started = await waitForCount(count('STARTED'), 2 * n, Math.max(0, deadline - startCalls), progress('STARTED'));
    const startedMs = startCalls + started.ms;
    sample('started');
    const terminatedEarly = await count('TERMINATED')();

    // suspend all
    const t1 = performance.now();
    let suspendErrors = 0;
    await pool(pids, CLIENT_CONCURRENCY, (processId) => ferry.suspend('consumer', processId, 'bench: suspend-all').then(() => undefined, () => void suspendErrors++));
    const suspendCalls = performance.now() - t1;
    const suspended = await waitForCount(count('SUSPENDED'), 2 * (n - suspendErrors), Math.max(0, deadline - suspendCalls), progress('SUSPENDED'));
    const suspendedMs = suspendCalls + suspended.ms;
    sample('suspended');
    clearInterval(sampler);
    killAll();

    // baseline: n minimal workflows at once on the same server
    const workflowBundle = await bundle(path.join(import.meta.dirname, 'baseline', 'workflows.ts'));
    baselineWorkers = await Promise.all(
      ['scale-a', 'scale-b', 'scale-c', 'scale-d'].map((taskQueue) => Worker.create({ connection: env.nativeConnection, dataConverter, namespace: 'default', taskQueue, workflowBundle, activities: baselineActivities })),
    );
    const runs = baselineWorkers.map((w) => w.run());
    const b0 = performance.now();
    await pool(pids, CLIENT_CONCURRENCY, (id, i) => client.workflow.start('minimalWorkflow', { workflowId: `minimal-${id}`, taskQueue: `scale-${'abcd'[i % 4]}`, args: [] }).then(() => undefined));
    const minimalDone = await waitForCount(() => completedMinimal(client), n, deadline, () => undefined);
    const baselineMs = performance.now() - b0;
    for (const w of baselineWorkers) w.shutdown();
    await Promise.all(runs);
    baselineWorkers = [];
    ctx.attach('scale', { n, startedMs, suspendedMs, startErrors, suspendErrors, terminatedEarly, started, suspended, baselineMs, minimalDone, rss: samples });

    const all = (r: { reached: number }, target: number) => r.reached >= target;
    const partial = (r: { reached: number }, target: number, ms: number) => `only ${r.reached} of ${target} after ${(ms / 1000).toFixed(0)} s (deadline)`;
    const rows: BenchRow[] = [
      {
        goal: 'scale',
        measure: `${n} pulls started at once: until all ${2 * n} processes (both sides) STARTED`,
        ferry: all(started, 2 * n) ? startedMs / 1000 : null,
        baseline: all(minimalDone, n) ? baselineMs / 1000 : null,
        ratio: all(started, 2 * n) && all(minimalDone, n) ? ratio(startedMs, baselineMs) : null,
        unit: 's',
        target: '≤ 300 s for 10,000',
        note: `baseline: ${n} minimal one-activity workflows started at once until all completed; ratio = ferry/baseline. Start calls took ${(startCalls / 1000).toFixed(1)} s (${startErrors} failed)${all(started, 2 * n) ? '' : `; ${partial(started, 2 * n, startedMs)}`}${terminatedEarly ? `; ${terminatedEarly} TERMINATED` : ''}`,
      },
      {
        goal: 'scale',
        measure: `suspend-all of ${n} started pulls: until all SUSPENDED (both sides)`,
        ferry: all(suspended, 2 * (n - suspendErrors)) ? suspendedMs / 1000 : null,
        baseline: null,
        ratio: null,
        unit: 's',
        target: '≤ 120 s for 10,000',
        note: `${n} suspend commands at the consumer, ${CLIENT_CONCURRENCY} at a time; the commands took ${(suspendCalls / 1000).toFixed(1)} s, ${suspendErrors} failed${all(suspended, 2 * (n - suspendErrors)) ? '' : `; ${partial(suspended, 2 * (n - suspendErrors), suspendedMs)}`}`,
      },
      ...WORKERS.map(
        (w): BenchRow => ({
          goal: 'scale',
          measure: `RSS peak, ${WORKER_LABELS[w]}, ${n} open pulls`,
          ferry: samples[w].peak,
          baseline: samples[w].idle,
          ratio: ratio(samples[w].peak, samples[w].idle),
          unit: 'MiB',
          note: `baseline: the same worker idle, before the first transfer; at all STARTED ${samples[w].started.toFixed(0)} MiB, after suspend-all ${samples[w].suspended.toFixed(0)} MiB; ${(((samples[w].peak - samples[w].idle) * 1024) / n).toFixed(0)} KiB per open pull`,
        }),
      ),
    ];
    return rows;
  } finally {
    clearInterval(sampler);
    killAll();
    for (const w of baselineWorkers) if (w.getState() === 'RUNNING') w.shutdown();
    await env.teardown().catch(() => undefined);
  }
}

async function completedMinimal(client: Client): Promise<number> {
  return (await client.workflow.count(`WorkflowType = 'minimalWorkflow' AND ExecutionStatus = 'Completed'`)).count;
}
