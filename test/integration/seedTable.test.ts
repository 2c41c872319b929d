import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inClusterAddress } from '../../src/ids.js';
import { DEPRECATED_TRANSFER_PROCESS_STATES } from '../../src/TransferProcessState.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { flowStatus, makeAsset, makeEndlessAsset, providerPidOf, sha256File, statesOf } from '../support/transfers.js';

/**
 * Every row of the seed's flow table, both columns, for consumer and provider, on a real
 * Temporal dev server with real workers, files and a real provisioning service on loopback.
 *
 *  async column: c-async (File destination provisioner), p-async (HTTP provisioner, answers 202)
 *  sync column:  c-sync, p-sync (no provisioner applies)
 */
let cluster: Cluster;
let service: ProvisioningService;
let small: { file: string; sha256: string };
const seen: string[][] = [];

beforeAll(async () => {
  cluster = await startCluster();
  service = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  small = makeAsset(cluster.root, 'assets/small.bin', 1024 * 1024 + 17);
  // suspended, resumed and terminated while the bytes move: endless, since a finite one (48 MiB at 4 MiB/s)
  // could complete before the commands land on a loaded machine
  makeEndlessAsset(cluster.root, 'assets/big.bin');
  const assets = {
    small: { endpointType: 'File' as const, endpoint: path.join(cluster.root, 'assets/small.bin'), endpointProperties: [] },
    big: { endpointType: 'File' as const, endpoint: path.join(cluster.root, 'assets/big.bin'), endpointProperties: [] },
  };
  // each consumer has its own agreement for each asset (in-cluster requests are admitted like DSP ones)
  const agreements = Object.fromEntries(
    ['c-async', 'c-sync'].flatMap((consumer) => ['small', 'big'].map((assetId) => [`agreement-${consumer}-${assetId}`, { assetId, counterparty: consumer }])),
  );
  const fileRoot = cluster.root;
  // without a destination provisioner the directory a consumer names must exist (a push makes only its flow's own in it)
  for (const dir of ['commands', 'twice']) mkdirSync(path.join(fileRoot, dir));
  await Promise.all([
    cluster.controlPlane({ connectorId: 'c-async', dataPlanes: [{ id: 'c-async-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.controlPlane({ connectorId: 'c-sync', dataPlanes: [{ id: 'c-sync-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.controlPlane({ connectorId: 'p-async', dataPlanes: [{ id: 'p-async-dp', transferTypes: ['File-PUSH'] }], assets, agreements }),
    cluster.controlPlane({ connectorId: 'p-sync', dataPlanes: [{ id: 'p-sync-dp', transferTypes: ['File-PUSH'] }], assets, agreements }),
    cluster.dataPlane({ instanceId: 'c-async-dp', fileRoot, provisioners: [{ kind: 'file-destination' }] }),
    cluster.dataPlane({ instanceId: 'c-sync-dp', fileRoot, provisioners: [] }),
    cluster.dataPlane({
      instanceId: 'p-async-dp',
      fileRoot,
      rateLimitBytesPerSec: 4 * 1024 * 1024,
      provisioners: [{ kind: 'http', name: 'staging', url: service.url, side: 'destination', endpointTypes: ['File'] }],
    }),
    cluster.dataPlane({ instanceId: 'p-sync-dp', fileRoot, provisioners: [], rateLimitBytesPerSec: 4 * 1024 * 1024 }),
  ]);
});

afterAll(async () => {
  await service?.close();
  await cluster?.shutdown();
});

const request = (consumer: string, provider: string, assetId: string, endpoint: string) => ({
  connectorId: consumer,
  counterpartyAddress: inClusterAddress(provider),
  agreementId: `agreement-${consumer}-${assetId}`,
  assetId,
  transferType: 'File-PUSH' as const,
  dataDestination: { endpointType: 'File' as const, endpoint },
});

async function track(connector: string, pid: string): Promise<string[]> {
  const states = statesOf(await cluster.ferry.status(connector, pid));
  seen.push(states);
  return states;
}

describe('INITIAL: consumer prepare / provider start', () => {
  it('consumer prepare provisions async (PREPARATION_REQUESTED); provider start does not (STARTING)', async () => {
    const { processId } = await cluster.ferry.startTransfer(request('c-async', 'p-sync', 'small', 'inbox'));
    const result = await cluster.ferry.result('c-async', processId);
    expect(result).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    const providerPid = await providerPidOf(cluster.ferry, 'c-async', processId);
    await cluster.ferry.result('p-sync', providerPid);

    expect(await track('c-async', processId)).toEqual(['INITIAL', 'PREPARATION_REQUESTED', 'REQUESTING', 'REQUESTED', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']);
    expect(await track('p-sync', providerPid)).toEqual(['INITIAL', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']);

    // the provisioner rewrote the destination to a per-flow directory, and the bytes landed there
    const status = await cluster.ferry.status('c-async', processId);
    const dir = path.join(cluster.root, 'inbox', processId);
    expect(status.dataDestination?.endpoint).toBe(dir);
    expect(await sha256File(path.join(dir, 'small.bin'))).toBe(small.sha256);
    // completion released the flow's resources but kept the delivered data
    const flow = await flowStatus(cluster.client, 'c-async', processId);
    expect(flow.state).toBe('DEPROVISIONED');
    expect(flow.resources.every((r) => r.released)).toBe(true);
  });

  it('consumer prepare does not provision (REQUESTING); provider start provisions async (STARTUP_REQUESTED)', async () => {
    const { processId } = await cluster.ferry.startTransfer(request('c-sync', 'p-async', 'small', 'plain'));
    expect((await cluster.ferry.result('c-sync', processId)).state).toBe('COMPLETED');
    const providerPid = await providerPidOf(cluster.ferry, 'c-sync', processId);
    await cluster.ferry.result('p-async', providerPid);

    expect(await track('c-sync', processId)).toEqual(['INITIAL', 'REQUESTING', 'REQUESTED', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']);
    expect(await track('p-async', providerPid)).toEqual(['INITIAL', 'STARTUP_REQUESTED', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']);
    // the provider's provisioner rewrote the destination: the bytes are at the rewritten address only,
    // in the flow directory the push made there (the service did not mark its directory as a flow's)
    const rewritten = path.join(cluster.root, 'plain', `svc-${providerPid}`, providerPid, 'small.bin');
    expect(await sha256File(rewritten)).toBe(small.sha256);
    expect(existsSync(path.join(cluster.root, 'plain', 'small.bin'))).toBe(false);
  });
});

describe('STARTED: suspend and terminate', () => {
  it('consumer suspends async, provider sync; consumer resumes (re-provisioning); provider terminates sync, consumer async', async () => {
    const { processId } = await cluster.ferry.startTransfer(request('c-async', 'p-sync', 'big', 'suspended'));
    const providerPid = await providerPidOf(cluster.ferry, 'c-async', processId);
    await cluster.ferry.waitForState('c-async', processId, ['STARTED']);
    await cluster.ferry.waitForState('p-sync', providerPid, ['STARTED']);

    await cluster.ferry.suspend('c-async', processId, 'maintenance window');
    const consumerSuspended = await cluster.ferry.waitForState('c-async', processId, ['SUSPENDED']);
    const providerSuspended = await cluster.ferry.waitForState('p-sync', providerPid, ['SUSPENDED']);
    expect(statesOf(consumerSuspended).slice(-3)).toEqual(['SUSPENSION_REQUESTED', 'SUSPENDING', 'SUSPENDED']);
    expect(statesOf(providerSuspended).slice(-2)).toEqual(['SUSPENDING', 'SUSPENDED']);
    expect(providerSuspended.history.at(-1)?.note).toContain('maintenance window');
    // the provider's data plane stopped moving bytes
    expect((await flowStatus(cluster.client, 'p-sync', providerPid)).state).toBe('SUSPENDED');

    await cluster.ferry.resume('c-async', processId);
    const resumed = await cluster.ferry.waitForState('c-async', processId, ['STARTED']);
    expect(statesOf(resumed).slice(-4)).toEqual(['RESUMING', 'STARTUP_REQUESTED', 'STARTING', 'STARTED']);
    await cluster.ferry.waitForState('p-sync', providerPid, ['STARTED']);
    expect((await flowStatus(cluster.client, 'p-sync', providerPid)).state).toBe('STARTED');

    await cluster.ferry.terminate('p-sync', providerPid, 'provider shuts down');
    const providerResult = await cluster.ferry.result('p-sync', providerPid);
    const consumerResult = await cluster.ferry.result('c-async', processId);
    expect(providerResult).toEqual({ state: 'TERMINATED', reason: 'provider shuts down' });
    expect(consumerResult.state).toBe('TERMINATED');
    expect(consumerResult.reason).toContain('provider shuts down');
    expect((await track('p-sync', providerPid)).slice(-2)).toEqual(['TERMINATING', 'TERMINATED']);
    expect((await track('c-async', processId)).slice(-3)).toEqual(['TERMINATION_REQUESTED', 'TERMINATING', 'TERMINATED']);
    // terminating released the consumer's provisioned directory
    expect(existsSync(path.join(cluster.root, 'suspended', processId))).toBe(false);
  });

  it('provider suspends async, consumer sync; consumer terminates sync, provider async', async () => {
    const { processId } = await cluster.ferry.startTransfer(request('c-sync', 'p-async', 'big', 'provider-side'));
    const providerPid = await providerPidOf(cluster.ferry, 'c-sync', processId);
    await cluster.ferry.waitForState('p-async', providerPid, ['STARTED']);
    await cluster.ferry.waitForState('c-sync', processId, ['STARTED']);
    const deprovisionsBefore = service.requests.filter((r) => r.op === 'deprovision').length;

    await cluster.ferry.suspend('p-async', providerPid);
    const providerSuspended = await cluster.ferry.waitForState('p-async', providerPid, ['SUSPENDED']);
    const consumerSuspended = await cluster.ferry.waitForState('c-sync', processId, ['SUSPENDED']);
    expect(statesOf(providerSuspended).slice(-3)).toEqual(['SUSPENSION_REQUESTED', 'SUSPENDING', 'SUSPENDED']);
    expect(statesOf(consumerSuspended).slice(-2)).toEqual(['SUSPENDING', 'SUSPENDED']);
    expect(service.requests.filter((r) => r.op === 'deprovision').length).toBe(deprovisionsBefore + 1);

    // resumed from the provider side, then terminated from the consumer side
    await cluster.ferry.resume('p-async', providerPid);
    await cluster.ferry.waitForState('p-async', providerPid, ['STARTED']);
    await cluster.ferry.waitForState('c-sync', processId, ['STARTED']);
    await cluster.ferry.terminate('c-sync', processId, 'consumer has enough');
    expect(await cluster.ferry.result('c-sync', processId)).toEqual({ state: 'TERMINATED', reason: 'consumer has enough' });
    const providerResult = await cluster.ferry.result('p-async', providerPid);
    expect(providerResult.state).toBe('TERMINATED');
    expect((await track('c-sync', processId)).slice(-2)).toEqual(['TERMINATING', 'TERMINATED']);
    expect((await track('p-async', providerPid)).slice(-3)).toEqual(['TERMINATION_REQUESTED', 'TERMINATING', 'TERMINATED']);
    // the provider-side staging directory was released on termination
    expect(existsSync(path.join(cluster.root, 'provider-side', `svc-${providerPid}`))).toBe(false);
  });
});

describe('client commands', () => {
  it('refuses illegal commands at once with a clear message, and search attributes follow the state', async () => {
    const { processId, workflowId } = await cluster.ferry.startTransfer(request('c-sync', 'p-sync', 'small', 'commands'));
    await cluster.ferry.result('c-sync', processId);
    await expect(cluster.ferry.suspend('c-sync', processId)).rejects.toThrow(/cannot suspend transfer process .* in state COMPLETED/);
    await expect(cluster.ferry.resume('c-sync', processId)).rejects.toThrow();
    const description = await cluster.client.workflow.getHandle(workflowId).describe();
    expect(description.searchAttributes).toMatchObject({
      FerryTransferState: ['COMPLETED'],
      FerryTransferRole: ['CONSUMER'],
      FerryTransferType: ['File-PUSH'],
      FerryCounterparty: ['temporal://p-sync'],
      FerryDataPlane: ['c-sync-dp'],
    });
  });

  it('starting the same process id twice is one transfer, while it runs and after it ended', async () => {
    const req = { ...request('c-sync', 'p-sync', 'small', 'twice'), processId: 'twice-1' };
    const first = await cluster.ferry.startTransfer(req);
    const second = await cluster.ferry.startTransfer(req);
    expect(second.workflowId).toBe(first.workflowId);
    await cluster.ferry.result('c-sync', 'twice-1');
    expect((await cluster.ferry.startTransfer(req)).workflowId).toBe(first.workflowId);
    // visibility is eventually consistent: wait until it lists the run, then it must list that one only
    const runs = async () => {
      const found = [];
      for await (const w of cluster.client.workflow.list({ query: `WorkflowId = '${first.workflowId}'` })) found.push(w);
      return found.length;
    };
    await expect.poll(runs, { timeout: 60_000 }).toBeGreaterThan(0);
    expect(await runs()).toBe(1);
  });
});

describe('deprecated states', () => {
  it('no process in this file entered a deprecated state', () => {
    expect(seen.length).toBeGreaterThanOrEqual(6);
    for (const states of seen) for (const s of DEPRECATED_TRANSFER_PROCESS_STATES) expect(states).not.toContain(s);
  });
});
