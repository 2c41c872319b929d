import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandRefusedError } from '../../src/client.js';
import { dataFlowWorkflowId, inClusterAddress, transferProcessWorkflowId } from '../../src/ids.js';
import type { TransferProcessState } from '../../src/TransferProcessState.js';
import type { RunningDataPlane } from '../../worker/dataPlaneWorker.js';
import { startProvisioningService, type ProvisioningMode, type ProvisioningService } from '../fixtures/provisioningService.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { until } from '../support/loopback.js';
import { flowStatus, makeAsset, providerPidOf, sha256File, workflowHealth } from '../support/transfers.js';

/**
 * Model-based tests of a whole transfer (both TransferProcesses, both DataFlows) on a real dev
 * server: fast-check draws a sequence of client commands on either side, provisioner behaviours
 * (ok, failed, late, twice, never) and data-plane worker restarts, runs it as fast as it goes (the
 * interleavings are whatever the real system makes of it), then checks the invariants:
 *  - both sides reach a final or stable state within their bounds, and agree on it;
 *  - COMPLETED means the destination's sha256 equals the source's (push);
 *  - after a final state every provisioned resource is released (or its release failed, with a reason);
 *  - no workflow recorded a defect or a failed workflow task.
 * `npm test` runs a fixed seed; `npm run test:model` runs many more (FERRY_MODEL_RUNS, FERRY_MODEL_SEED).
 */
const RUNS = Number(process.env.FERRY_MODEL_RUNS ?? 6);
const SEED = Number(process.env.FERRY_MODEL_SEED ?? 20261128);
const STABLE: TransferProcessState[] = ['STARTED', 'SUSPENDED', 'COMPLETED', 'TERMINATED'];
const FINAL: TransferProcessState[] = ['COMPLETED', 'TERMINATED'];
/**
 * How long a side may take to become stable, both to settle, a data flow to end: a bound against a
 * hang, far past the longest chain of the timers configured below (a 1 m counterpartyTimeout, a 20 s
 * retry budget, 2 s stale waits, 6 s release timers), which a loaded machine runs late.
 */
const SETTLE_BOUND_MS = 10 * 60_000;

type Side = 'consumer' | 'provider';
type Pair = 'sync' | 'async';
type Kind = 'File-PUSH' | 'HttpData-PULL';

let cluster: Cluster;
const services: Record<Side, ProvisioningService> = {} as never;
const dataPlanes = new Map<string, { running: RunningDataPlane; config: Parameters<Cluster['dataPlane']>[0] }>();
let asset: { sha256: string };

const connector = (pair: Pair, side: Side) => `m${side[0]}${pair[0]}`; // mcs, mps, mca, mpa

async function startDataPlane(config: Parameters<Cluster['dataPlane']>[0]): Promise<void> {
  dataPlanes.set(config.instanceId, { running: await cluster.dataPlane(config), config });
}

beforeAll(async () => {
  cluster = await startCluster();
  asset = makeAsset(cluster.root, 'assets/model.bin', 6 * 1024 * 1024);
  for (const side of ['consumer', 'provider'] as const) services[side] = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  const transfer = { requestedTimeout: '2s', staleRetries: 2, counterpartyRetryBudget: '20s', counterpartyTimeout: '1m' };
  const watchdog = { interval: '5s', lostAfter: '30s' };
  const dataFlow = { provisionTimeout: '6s', deprovisionTimeout: '6s', stopTimeout: '5s' };
  const types = ['File-PUSH', 'HttpData-PULL'] as const;
  for (const pair of ['sync', 'async'] as const) {
    const c = connector(pair, 'consumer');
    const p = connector(pair, 'provider');
    await cluster.controlPlane({ connectorId: c, dataPlanes: [{ id: `${c}-dp`, transferTypes: [...types] }], transfer, watchdog });
    await cluster.controlPlane({
      connectorId: p,
      dataPlanes: [{ id: `${p}-dp`, transferTypes: [...types] }],
      assets: { model: { endpointType: 'File', endpoint: path.join(cluster.root, 'assets/model.bin'), endpointProperties: [] } },
      agreements: { 'model-agreement': { assetId: 'model', counterparty: c } },
      transfer,
      watchdog,
    });
    const http = (side: Side, endpointTypes: string[]) => ({ kind: 'http' as const, name: `svc-${side}`, url: services[side].url, side: 'destination' as const, endpointTypes });
    await startDataPlane({
      instanceId: `${c}-dp`,
      fileRoot: cluster.root,
      dataFlow,
      provisioners: pair === 'async' ? [{ kind: 'file-destination' }, http('consumer', ['File'])] : [],
    });
    await startDataPlane({
      instanceId: `${p}-dp`,
      fileRoot: cluster.root,
      dataFlow,
      rateLimitBytesPerSec: 2 * 1024 * 1024,
      publicApi: { host: '127.0.0.1', port: 0 },
      provisioners: pair === 'async' ? [http('provider', ['File', 'https://w3id.org/idsa/v4.1/HTTP'])] : [],
    });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(services).map((s) => s?.close()));
  await cluster?.shutdown();
});

interface Real {
  pair: Pair;
  kind: Kind;
  consumerPid: string;
  providerPid: string;
  log: string[];
}

const names = (r: Real, side: Side) => ({ connector: connector(r.pair, side), pid: side === 'consumer' ? r.consumerPid : r.providerPid });

/** A client command; a refusal is an answer like any other (the table says when). */
class Command implements fc.AsyncCommand<object, Real> {
  constructor(
    readonly verb: 'suspend' | 'resume' | 'terminate' | 'complete',
    readonly side: Side,
  ) {}
  check = () => true;
  async run(_: object, r: Real): Promise<void> {
    const { connector: c, pid } = names(r, this.side);
    const f = cluster.ferry;
    const call = { suspend: () => f.suspend(c, pid, 'model'), resume: () => f.resume(c, pid), terminate: () => f.terminate(c, pid, 'model'), complete: () => f.complete(c, pid) }[this.verb];
    try {
      r.log.push(`${this.side} ${this.verb} -> ${await call()}`);
    } catch (e) {
      if (!(e instanceof CommandRefusedError)) throw e;
      r.log.push(`${this.side} ${this.verb} refused`);
    }
  }
  toString = () => `${this.side}.${this.verb}`;
}

/** Waits (bounded, by event: the state) until a side is stable. */
class AwaitStable implements fc.AsyncCommand<object, Real> {
  constructor(readonly side: Side) {}
  check = () => true;
  async run(_: object, r: Real): Promise<void> {
    const { connector: c, pid } = names(r, this.side);
    const s = await cluster.ferry.waitForState(c, pid, STABLE, SETTLE_BOUND_MS);
    r.log.push(`${this.side} stable ${s.state}`);
  }
  toString = () => `${this.side}.awaitStable`;
}

/** How that side's provisioning service behaves from now on (async pair only). */
class Provisioning implements fc.AsyncCommand<object, Real> {
  constructor(
    readonly side: Side,
    readonly behaviour: ProvisioningMode | 'hold' | 'release' | 'twice',
  ) {}
  check = () => true;
  async run(_: object, r: Real): Promise<void> {
    if (r.pair !== 'async') return;
    const svc = services[this.side];
    if (this.behaviour === 'hold') svc.setAutoRelease(false);
    else if (this.behaviour === 'release') {
      svc.setAutoRelease(true);
      await svc.releasePending();
    } else if (this.behaviour === 'twice') await svc.replayLast();
    else svc.setMode(this.behaviour);
    r.log.push(`${this.side} provisioning ${this.behaviour}`);
  }
  toString = () => `${this.side}.provisioning(${this.behaviour})`;
}

/** The side's data-plane worker goes away and comes back. */
class RestartDataPlane implements fc.AsyncCommand<object, Real> {
  constructor(readonly side: Side) {}
  check = () => true;
  async run(_: object, r: Real): Promise<void> {
    const id = `${connector(r.pair, this.side)}-dp`;
    const dp = dataPlanes.get(id)!;
    await dp.running.shutdown();
    await startDataPlane(dp.config);
    r.log.push(`${this.side} data plane restarted`);
  }
  toString = () => `${this.side}.restartDataPlane`;
}

const side = fc.constantFrom<Side>('consumer', 'provider');
const client = fc.tuple(fc.constantFrom('suspend', 'resume', 'suspend', 'resume', 'terminate', 'complete' as const), side).map(([v, s]) => new Command(v, s));
const awaitStable = side.map((s) => new AwaitStable(s));
// weights by repetition: mostly commands and waits (so suspensions get resumed), then provisioner behaviours and restarts
const commands = fc.commands(
  [
    client,
    client,
    client,
    awaitStable,
    awaitStable,
    fc.tuple(side, fc.constantFrom<ProvisioningMode | 'hold' | 'release' | 'twice'>('async', 'sync', 'async-fail', 'never', 'hold', 'release', 'twice')).map(([s, b]) => new Provisioning(s, b)),
    side.map((s) => new RestartDataPlane(s)),
  ],
  { maxCommands: 12, size: 'medium' },
);

/** Waits until both sides are stable and agree; what they agreed on. */
async function settle(r: Real): Promise<TransferProcessState> {
  const deadline = Date.now() + SETTLE_BOUND_MS;
  let last = '';
  for (;;) {
    const [c, p] = await Promise.all((['consumer', 'provider'] as const).map((s) => cluster.ferry.status(names(r, s).connector, names(r, s).pid)));
    if (c!.state === p!.state && STABLE.includes(c!.state)) return c!.state;
    last = `consumer ${c!.state} (${c!.waitingFor ?? '-'}), provider ${p!.state} (${p!.waitingFor ?? '-'})`;
    if (Date.now() > deadline) throw new Error(`sides did not settle in agreement: ${last}\n${r.log.join('\n')}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** What the runs reached, printed at the end: a search that never leaves STARTED proves little. */
const coverage = new Map<string, number>();
const count = (what: string) => coverage.set(what, (coverage.get(what) ?? 0) + 1);

async function checkInvariants(r: Real): Promise<void> {
  let agreed = await settle(r);
  count(`settled ${agreed}`);
  for (const line of r.log) if (/refused|-> /.test(line)) count(line.replace(/ -> .*/, ' accepted'));
  if (!FINAL.includes(agreed)) {
    // stable but live: end it, and the two sides must still agree
    try {
      await cluster.ferry.terminate(names(r, 'consumer').connector, r.consumerPid, 'model run over');
    } catch (e) {
      if (!(e instanceof CommandRefusedError)) throw e;
    }
    agreed = await settle(r);
    expect(FINAL, r.log.join('\n')).toContain(agreed);
  }
  if (agreed === 'COMPLETED' && r.kind === 'File-PUSH') {
    const destination = (await cluster.ferry.status(names(r, 'consumer').connector, r.consumerPid)).dataDestination!.endpoint;
    expect(await sha256File(path.resolve(cluster.root, destination, 'model.bin')), r.log.join('\n')).toBe(asset.sha256);
  }
  for (const s of ['consumer', 'provider'] as const) {
    const { connector: c, pid } = names(r, s);
    // the data flow ends (bounded by its release timers) with everything released, or says why not
    const flowId = dataFlowWorkflowId(c, pid);
    // polled, not raced against a timer: its end follows from its own timers, which a loaded machine runs late
    const handle = cluster.client.workflow.getHandle(flowId);
    const ended = await until(
      `${s} data flow to end or fail its release`,
      async () => {
        if (await handle.describe().then((d) => d.status.name !== 'RUNNING', () => true)) return 'ended';
        return (await flowStatus(cluster.client, c, pid).catch(() => undefined))?.state === 'DEPROVISION_FAILED' ? 'open' : undefined;
      },
      SETTLE_BOUND_MS,
    ).then((v) => v === 'ended', () => false);
    const flow = await flowStatus(cluster.client, c, pid).catch(() => undefined);
    if (flow) {
      const unreleased = flow.resources.filter((x) => x.released !== true);
      expect(ended || flow.state === 'DEPROVISION_FAILED', `${s} data flow still open in ${flow.state}\n${r.log.join('\n')}`).toBe(true);
      if (flow.state !== 'DEPROVISION_FAILED') expect(unreleased, `${s}: ${JSON.stringify(flow.history)}\n${r.log.join('\n')}`).toEqual([]);
      else expect(flow.error).toBeTruthy();
    }
    for (const id of [transferProcessWorkflowId(c, pid), flowId]) {
      const health = await workflowHealth(cluster.client, id).catch(() => ({ defects: [], taskFailures: [] }));
      expect(health, `${id}\n${r.log.join('\n')}`).toEqual({ defects: [], taskFailures: [] });
    }
  }
}

describe('model-based: random interleavings of commands, provisioner behaviours and restarts', () => {
  it('every run settles in agreement, COMPLETED means verified bytes, everything is released, no defect', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom<Pair>('sync', 'async'), fc.constantFrom<Kind>('File-PUSH', 'HttpData-PULL'), commands, async (pair, kind, cmds) => {
        for (const s of Object.values(services)) {
          s.setMode('async');
          s.setAutoRelease(true);
        }
        const consumerPid = `model-${SEED}-${++n}`;
        const c = connector(pair, 'consumer');
        await cluster.ferry.startTransfer({
          connectorId: c,
          processId: consumerPid,
          counterpartyAddress: inClusterAddress(connector(pair, 'provider')),
          agreementId: 'model-agreement',
          assetId: 'model',
          transferType: kind,
          ...(kind === 'File-PUSH' ? { dataDestination: { endpointType: 'File' as const, endpoint: `model/${consumerPid}` } } : {}),
        });
        const providerPid = await providerPidOf(cluster.ferry, c, consumerPid);
        const real: Real = { pair, kind, consumerPid, providerPid, log: [`${pair} ${kind} ${consumerPid}`] };
        await fc.asyncModelRun(() => ({ model: {}, real }), cmds);
        // held callbacks go out (a late callback), then the invariants
        for (const s of Object.values(services)) {
          s.setAutoRelease(true);
          await s.releasePending();
        }
        await checkInvariants(real);
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true, verbose: 1 },
    );
    console.log(`model coverage over ${RUNS} runs:\n${[...coverage].sort().map(([k, v]) => `  ${k}: ${v}`).join('\n')}`);
  }, 40 * 60_000);
});
