import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { installRuntime } from '../../worker/runtime.js';
import { DSP_BUDGET_MS, FINAL_PROCESS_STATES, Harness, pool, sleep, type Transfer, type TransferKind, type TransferSnapshot } from './harness.js';
import { workerOutputs } from '../support/processes.js';

/**
 * `npm run drill`: fault drills on real processes (issue 9 §3). Each drill starts a batch of
 * transfers (200 by default) between two connectors (four worker processes, DSP over loopback, one
 * Temporal dev server on a SQLite file), strikes while they are in the state it aims at, lifts the
 * fault, and waits for every transfer to end. It prints:
 *
 *   drill | in flight | outcome | lost | duplicated | recovery time
 *
 * - in flight: transfers of the batch in the state the fault aims at when it struck;
 * - outcome: final states of the consumer processes (`!` marks states the drill does not expect);
 * - lost: a transfer that (a) is COMPLETED but its destination lacks the asset's bytes (sha256
 *   differs or nothing there), (b) had its bytes delivered but ended TERMINATED on either side, (c)
 *   ends differently on the two sides (COMPLETED on one, TERMINATED on the other), or (d) is stuck:
 *   any of its four workflows still running when the drill's bound is over;
 * - duplicated: a transfer delivered more than once (two delivered files, or two complete HTTP bodies);
 * - recovery time: from the fault's end (worker restarted, server back, endpoint up) to every
 *   workflow of the batch ended (for drills whose transfers must end while the fault lasts, a
 *   provisioner that never calls back or an endpoint down past the budget: from the strike).
 *
 * Options: --transfers N (200), --only a,b (drill names), --keep (keep the temp dir), --json FILE.
 * Exit code 1 when any drill lost or duplicated a transfer or ended one in an unexpected state.
 */

interface Context {
  h: Harness;
  name: string;
  n: number;
  since: Date;
}

interface Scenario {
  name: string;
  kind: TransferKind;
  /** Consumer final states this drill expects. */
  expect: string[];
  /**
   * Starts the batch, strikes, lifts. Returns the transfers, how many were in the aimed-at state
   * when it struck, and when the fault was lifted.
   */
  run(ctx: Context): Promise<{ batch: Transfer[]; inFlight: number; liftedAt: number }>;
}

interface Row {
  drill: string;
  inFlight: number;
  outcome: string;
  lost: number;
  duplicated: number;
  recoverySec: number | null;
  pass: boolean;
  notes: string[];
}

const MIN = 60_000;
/** How long after the fault is lifted every transfer of a drill must have ended. */
const BOUND_MS = 10 * MIN;

/** Waits until at least `atLeast` of the batch's workflows of `type` on `side` are in `state` (or the timeout), returns the count. */
async function reach(ctx: Context, side: 'consumer' | 'provider', type: 'transferProcess' | 'dataFlow', state: string, atLeast: number, timeoutMs = 5 * MIN): Promise<number> {
  let n = 0;
  await ctx.h.until(`${atLeast} ${side} ${type} in ${state}`, timeoutMs, async () => {
    n = await ctx.h.count(side, type, state, ctx.since);
    return n >= atLeast;
  });
  return n;
}

const restartAfterKill = async (ctx: Context, worker: Parameters<Harness['kill']>[0]) => {
  ctx.h.log(`  SIGKILL ${worker}`);
  await ctx.h.kill(worker);
  await ctx.h.startWorker(worker);
  ctx.h.log(`  ${worker} restarted`);
  return Date.now();
};

/**
 * The provider's DSP endpoint is down while the consumers send their requests, for `ms`. Within the
 * budget the transfers go on once it is back; past it they end while it is still down, so recovery
 * runs from the strike then.
 */
async function providerOutage(ctx: Context, kind: TransferKind, ms: number) {
  await ctx.h.proxies.provider.down();
  const batch = await ctx.h.startBatch(ctx.name, ctx.n, kind, { counterpartyRetryBudget: `${DSP_BUDGET_MS / 1000}s` });
  // REQUESTING is an under-way state, not a search attribute: a process sending its request still shows INITIAL
  const inFlight = await reach(ctx, 'consumer', 'transferProcess', 'INITIAL', Math.ceil(ctx.n * 0.5), MIN);
  const struckAt = Date.now();
  await sleep(ms);
  await ctx.h.proxies.provider.up();
  return { batch, inFlight, liftedAt: ms > DSP_BUDGET_MS ? struckAt : Date.now() };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'dp-kill-provisioning',
    kind: 'file-small',
    expect: ['COMPLETED'],
    async run(ctx) {
      const { consumer } = ctx.h.services;
      consumer.modes.provision = 'slow'; // provision calls stay in flight for a while
      const before = consumer.received.provision;
      const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
      await ctx.h.until('provision calls in flight', 5 * MIN, async () => consumer.received.provision - before >= ctx.n * 0.5);
      const inFlight = consumer.received.provision - before;
      consumer.modes.provision = 'sync';
      const liftedAt = await restartAfterKill(ctx, 'consumerDp');
      return { batch, inFlight, liftedAt };
    },
  },
  {
    name: 'dp-kill-transfer',
    kind: 'file-slow',
    expect: ['COMPLETED'],
    async run(ctx) {
      const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
      const inFlight = await reach(ctx, 'provider', 'dataFlow', 'STARTED', Math.ceil(ctx.n * 0.5));
      const liftedAt = await restartAfterKill(ctx, 'providerDp');
      return { batch, inFlight, liftedAt };
    },
  },
  {
    name: 'dp-kill-deprovisioning',
    kind: 'file-small',
    expect: ['COMPLETED'],
    async run(ctx) {
      const { consumer } = ctx.h.services;
      consumer.modes.deprovision = 'held';
      const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
      const inFlight = await reach(ctx, 'consumer', 'dataFlow', 'DEPROVISION_REQUESTED', ctx.n);
      const liftedAt = await restartAfterKill(ctx, 'consumerDp');
      consumer.modes.deprovision = 'sync';
      consumer.release();
      return { batch, inFlight, liftedAt };
    },
  },
  ...(['PREPARATION_REQUESTED', 'STARTUP_REQUESTED', 'SUSPENSION_REQUESTED', 'TERMINATION_REQUESTED'] as const).map(
    (state): Scenario => ({
      name: `cp-kill-${state}`,
      kind: state === 'STARTUP_REQUESTED' ? 'http' : state === 'PREPARATION_REQUESTED' ? 'file-small' : 'file-slow',
      expect: state === 'TERMINATION_REQUESTED' ? ['TERMINATED', 'COMPLETED'] : ['COMPLETED'],
        async run(ctx) {
        const { consumer, provider } = ctx.h.services;
        const side = state === 'STARTUP_REQUESTED' ? 'provider' : 'consumer';
        const worker = side === 'provider' ? 'providerCp' : 'consumerCp';
        const service = side === 'provider' ? provider : consumer;
        if (state === 'PREPARATION_REQUESTED' || state === 'STARTUP_REQUESTED') service.modes.provision = 'held';
        // only the release of the suspension (termination) is held: a push that completes first releases at once
        else service.modes.deprovision = 'held-stop';
        const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
        if (state === 'SUSPENSION_REQUESTED' || state === 'TERMINATION_REQUESTED') {
          await reach(ctx, 'consumer', 'transferProcess', 'STARTED', Math.ceil(ctx.n * 0.9));
          // the consumer's operator suspends (terminates) every transfer still running
          await pool(batch, 50, async (t) => {
            await (state === 'SUSPENSION_REQUESTED' ? ctx.h.consumer.suspend('consumer', t.pid, 'drill') : ctx.h.consumer.terminate('consumer', t.pid, 'drill')).catch(() => undefined);
          });
        }
        const inFlight = await reach(ctx, side, 'transferProcess', state, Math.ceil(ctx.n * (state.startsWith('S') && side === 'consumer' ? 0.5 : 0.9)), 5 * MIN);
        const liftedAt = await restartAfterKill(ctx, worker);
        service.modes.provision = 'sync';
        service.modes.deprovision = 'sync';
        service.release();
        if (state === 'SUSPENSION_REQUESTED') {
          // the operator resumes every suspended one, until none is suspended or on its way there
          const resumed = new Set<string>();
          await ctx.h.until('suspended transfers resumed', 5 * MIN, async () => {
            const states = await ctx.h.consumerStates(ctx.name);
            const due = batch.filter((t) => states.get(t.pid) === 'SUSPENDED' && !resumed.has(t.pid));
            await pool(due, 20, async (t) => {
              await ctx.h.consumer.resume('consumer', t.pid);
              resumed.add(t.pid);
            }).catch(() => undefined);
            return batch.every((t) => resumed.has(t.pid) || !['SUSPENSION_REQUESTED', 'SUSPENDING', 'SUSPENDED'].includes(states.get(t.pid) ?? ''));
          });
        }
        return { batch, inFlight, liftedAt };
      },
    }),
  ),
  {
    name: 'temporal-restart',
    kind: 'file-slow',
    expect: ['COMPLETED'],
    async run(ctx) {
      const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
      const inFlight = await reach(ctx, 'provider', 'dataFlow', 'STARTED', Math.ceil(ctx.n * 0.5));
      ctx.h.log('  stopping the Temporal dev server');
      await ctx.h.server.stop();
      await sleep(5_000);
      await ctx.h.server.start();
      ctx.h.log('  the Temporal dev server is back (same database)');
      return { batch, inFlight, liftedAt: Date.now() };
    },
  },
  {
    name: 'dsp-down-within-budget',
    kind: 'file-small',
    expect: ['COMPLETED'],
    run: (ctx) => providerOutage(ctx, 'file-small', DSP_BUDGET_MS / 3),
  },
  {
    name: 'dsp-down-past-budget',
    kind: 'file-small',
    expect: ['TERMINATED'],
    run: (ctx) => providerOutage(ctx, 'file-small', DSP_BUDGET_MS * 2),
  },
  {
    name: 'dsp-down-at-completion',
    kind: 'file-slow',
    expect: ['COMPLETED'],
    async run(ctx) {
      const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
      // every start message has arrived: the bytes are moving, the completion messages are to come
      const inFlight = await reach(ctx, 'consumer', 'transferProcess', 'STARTED', Math.ceil(ctx.n * 0.9));
      // the consumer's endpoint goes away while the bytes arrive, for 90 s: the provider's completion
      // messages are retried through it (a completion never told at all is test/integration/timers.test.ts's).
      // Longer than the watchdog's lostAfter (2 m), the provider would rightly end the pushes still
      // moving as "counterparty unreachable" (a run with 3 minutes ended 84 of 200 so).
      await ctx.h.proxies.consumer.down();
      await sleep(DSP_BUDGET_MS * 1.5);
      await ctx.h.proxies.consumer.up();
      return { batch, inFlight, liftedAt: Date.now() };
    },
  },
  {
    name: 'provisioner-never-calls-back',
    kind: 'file-small',
    expect: ['TERMINATED'],
    async run(ctx) {
      ctx.h.services.consumer.modes.provision = 'never';
      const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
      const inFlight = await reach(ctx, 'consumer', 'transferProcess', 'PREPARATION_REQUESTED', Math.ceil(ctx.n * 0.9));
      // never lifted: recovery is the time to a final state from here
      const liftedAt = Date.now();
      await ctx.h.until('every process to end', 10 * MIN, async () => [...(await ctx.h.consumerStates(ctx.name)).values()].every((s) => FINAL_PROCESS_STATES.includes(s)));
      ctx.h.services.consumer.modes.provision = 'sync';
      return { batch, inFlight, liftedAt };
    },
  },
  {
    name: 'provisioner-calls-back-twice',
    kind: 'file-small',
    expect: ['COMPLETED'],
    async run(ctx) {
      const { consumer } = ctx.h.services;
      consumer.modes = { provision: 'twice', deprovision: 'twice' };
      const sent = consumer.callbacksSent;
      const batch = await ctx.h.startBatch(ctx.name, ctx.n, this.kind);
      const inFlight = await reach(ctx, 'consumer', 'transferProcess', 'PREPARATION_REQUESTED', 1, MIN).catch(() => 0);
      await ctx.h.until('both callbacks of every provision', 5 * MIN, async () => consumer.callbacksSent - sent >= 2 * ctx.n);
      consumer.modes = { provision: 'sync', deprovision: 'sync' };
      return { batch, inFlight: Math.max(inFlight, ctx.n), liftedAt: Date.now() };
    },
  },
];

function lostReasons(snap: TransferSnapshot): string[] {
  const c = snap.consumer?.state ?? 'absent';
  const p = snap.provider?.state;
  const reasons: string[] = [];
  const running = [snap.consumer, snap.provider, snap.consumerFlow, snap.providerFlow].some((w) => w?.running);
  if (running || !FINAL_PROCESS_STATES.includes(c)) reasons.push('stuck');
  if (c === 'COMPLETED' && !snap.delivery.intact) reasons.push('completed without its bytes');
  if (snap.delivery.intact && (c === 'TERMINATED' || p === 'TERMINATED')) reasons.push('delivered but TERMINATED');
  if ((c === 'COMPLETED' && p !== 'COMPLETED') || (p === 'COMPLETED' && c !== 'COMPLETED')) reasons.push(`sides disagree (consumer ${c}, provider ${p ?? 'absent'})`);
  return reasons;
}
const isLost = (snap: TransferSnapshot): boolean => lostReasons(snap).length > 0;

function judge(s: Scenario, snaps: TransferSnapshot[]): { outcome: string; lost: number; duplicated: number; pass: boolean; notes: string[] } {
  const counts = new Map<string, number>();
  const notes = new Map<string, number>();
  const note = (why: string) => notes.set(why, (notes.get(why) ?? 0) + 1);
  let lost = 0;
  let duplicated = 0;
  for (const snap of snaps) {
    const c = snap.consumer?.state ?? 'absent';
    counts.set(c, (counts.get(c) ?? 0) + 1);
    const reasons = lostReasons(snap);
    if (reasons.length) {
      lost++;
      reasons.forEach(note);
    }
    if (snap.delivery.count > 1) {
      duplicated++;
      note('delivered twice');
    }
  }
  const unexpected = [...counts.keys()].filter((k) => !s.expect.includes(k));
  const outcome = [...counts].map(([state, n]) => `${n} ${state}${s.expect.includes(state) ? '' : '!'}`).join(', ');
  return { outcome, lost, duplicated, pass: lost === 0 && duplicated === 0 && unexpected.length === 0, notes: [...notes].map(([why, n]) => `${n} ${why}`) };
}

async function runScenario(h: Harness, s: Scenario, n: number, keepFiles: boolean): Promise<Row> {
  h.log(`drill ${s.name}: ${n} × ${s.kind}`);
  // every drill starts from a healthy world
  h.services.consumer.modes = { provision: 'sync', deprovision: 'sync' };
  h.services.provider.modes = { provision: 'sync', deprovision: 'sync' };
  await h.proxies.consumer.up().catch(() => undefined);
  await h.proxies.provider.up().catch(() => undefined);
  const ctx: Context = { h, name: s.name, n, since: new Date(Date.now() - 1_000) };
  const { batch, inFlight, liftedAt } = await s.run(ctx);
  h.log(`  struck with ${inFlight} in flight; waiting for every transfer to end (bound ${BOUND_MS / 1000} s)`);
  const deadline = liftedAt + BOUND_MS;
  let snaps: TransferSnapshot[] = [];
  let endedAt: number | null = null;
  for (;;) {
    const states = await h.consumerStates(s.name).catch(() => new Map<string, string>());
    const allFinal = states.size === batch.length && [...states.values()].every((st) => FINAL_PROCESS_STATES.includes(st));
    if (allFinal || Date.now() > deadline) {
      snaps = await h.snapshot(batch);
      const running = snaps.some((x) => [x.consumer, x.provider, x.consumerFlow, x.providerFlow].some((w) => w?.running));
      if (!running) {
        endedAt = Date.now();
        break;
      }
      if (Date.now() > deadline) break;
    }
    await sleep(allFinal ? 5_000 : 2_000);
  }
  const verdict = judge(s, snaps);
  // judged: the delivered copies go, so a full run needs room for one drill's files at a time (200 × 32 MiB)
  if (!keepFiles) rmSync(path.join(h.files, 'drill', s.name), { recursive: true, force: true });
  // what the lost ones say about themselves
  const lostOnes = snaps.filter((x) => isLost(x));
  const reasons = new Map<string, number>();
  for (const r of await pool(lostOnes.slice(0, 50), 10, (x) => h.reasons(x.transfer))) reasons.set(r, (reasons.get(r) ?? 0) + 1);
  for (const [r, k] of reasons) verdict.notes.push(`${k}× ${r}`);
  const row: Row = { drill: s.name, inFlight, outcome: verdict.outcome, lost: verdict.lost, duplicated: verdict.duplicated, recoverySec: endedAt === null ? null : Math.round((endedAt - liftedAt) / 1000), pass: verdict.pass, notes: verdict.notes };
  h.log(`  ${row.pass ? 'ok' : 'FAILED'}: ${row.outcome}; lost ${row.lost}, duplicated ${row.duplicated}; recovery ${row.recoverySec ?? '—'} s${row.notes.length ? `; ${row.notes.join('; ')}` : ''}`);
  return row;
}

function table(rows: Row[]): string {
  const head = ['drill', 'in flight', 'outcome', 'lost', 'duplicated', 'recovery time'];
  const body = rows.map((r) => [r.drill, String(r.inFlight), r.outcome, String(r.lost), String(r.duplicated), r.recoverySec === null ? `stuck past bound` : `${r.recoverySec} s`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      transfers: { type: 'string', default: '200' },
      only: { type: 'string' },
      keep: { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('Usage: npm run drill -- [--transfers N] [--only drill,drill] [--keep] [--json FILE]\n\nFault drills on real processes (README, "Fault drills"); exits 1 unless every drill lost and duplicated nothing.\n\ndrills:');
    for (const s of SCENARIOS) console.log(`  ${s.name}`);
    return;
  }
  const n = Number(values.transfers);
  if (!Number.isInteger(n) || n < 1) throw new Error('--transfers must be a positive integer');
  const only = values.only?.split(',').map((x) => x.trim());
  const unknown = only?.filter((o) => !SCENARIOS.some((s) => s.name === o)) ?? [];
  if (unknown.length) throw new Error(`no drill named ${unknown.join(', ')}; --help lists them`);
  installRuntime();
  const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-drill-'));
  const started = Date.now();
  const log = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}`);
  const h = new Harness({ root, log });
  const rows: Row[] = [];
  const stop = () => {
    void h.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await h.start();
    for (const s of SCENARIOS.filter((x) => !only || only.includes(x.name))) {
      rows.push(await runScenario(h, s, n, values.keep).catch((e: unknown): Row => {
        log(`  drill ${s.name} broke: ${(e as Error).stack ?? e}`);
        return { drill: s.name, inFlight: 0, outcome: `drill error: ${(e as Error).message}`, lost: 0, duplicated: 0, recoverySec: null, pass: false, notes: [] };
      }));
    }
  } finally {
    // the table first: a client call still retrying when the connection closes must not take it along
    if (rows.length) console.log(`\n${table(rows)}\n`);
    process.on('uncaughtException', (e) => {
      if (!/Channel has been shut down/.test(e.message)) throw e;
    });
    await h.close();
    if (!values.keep) rmSync(root, { recursive: true, force: true });
    else {
      // with the database, what every worker process printed: the story of a lost transfer
      workerOutputs.forEach((w, i) => writeFileSync(path.join(root, `worker-${i}-${w.name.split(' ')[1] ?? 'worker'}.log`), w.text));
      log(`kept ${root} (Temporal's database, the configs, every worker's output)`);
    }
  }
  for (const r of rows.filter((x) => x.notes.length)) console.log(`${r.drill}: ${r.notes.join('; ')}`);
  console.log(`\n${rows.filter((r) => r.pass).length} of ${rows.length} drills passed (${n} transfers each, ${((Date.now() - started) / 60_000).toFixed(1)} min)`);
  if (values.json) writeFileSync(values.json, JSON.stringify(rows, null, 2));
  if (rows.some((r) => !r.pass)) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
