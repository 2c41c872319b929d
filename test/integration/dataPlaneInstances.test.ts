import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataFlowWorkflowId, dataPlaneTaskQueue, inClusterAddress } from '../../src/ids.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { flowStatus, makeAsset, makeEndlessAsset, providerPidOf, sha256File } from '../support/transfers.js';

/**
 * Two data-plane instances behind one consumer: the provisioner rewrites the destination into the
 * instance's own directory, the bytes land there, and every later call for the flow (suspend,
 * resume, terminate) runs on the instance that provisioned.
 */
let cluster: Cluster;
let asset: { file: string; sha256: string };
const instances = ['dp-a', 'dp-b'] as const;
const rootOf = (id: string) => path.join(cluster.root, 'instances', id);

beforeAll(async () => {
  cluster = await startCluster();
  asset = makeAsset(cluster.root, 'assets/data.bin', 3 * 1024 * 1024 + 5);
  // suspended, resumed and terminated in flight: a finite one (4 s at 8 MiB/s) could complete before the terminate
  makeEndlessAsset(cluster.root, 'assets/slow.bin');
  const assets = {
    data: { endpointType: 'File' as const, endpoint: asset.file, endpointProperties: [] },
    slow: { endpointType: 'File' as const, endpoint: path.join(cluster.root, 'assets/slow.bin'), endpointProperties: [] },
  };
  for (const id of instances) mkdirSync(rootOf(id), { recursive: true });
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: instances.map((id) => ({ id, transferTypes: ['File-PUSH' as const] })) }),
    ...instances.map((id) => cluster.dataPlane({ instanceId: id, fileRoot: rootOf(id), provisioners: [{ kind: 'file-destination' }] })),
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }],
      assets,
      agreements: { 'agreement-data': { assetId: 'data', counterparty: 'consumer' }, 'agreement-slow': { assetId: 'slow', counterparty: 'consumer' } },
    }),
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [], rateLimitBytesPerSec: 8 * 1024 * 1024 }),
  ]);
});

afterAll(async () => cluster?.shutdown());

const request = (processId: string, assetId: string) => ({
  connectorId: 'consumer',
  processId,
  counterpartyAddress: inClusterAddress('provider'),
  agreementId: `agreement-${assetId}`,
  assetId,
  transferType: 'File-PUSH' as const,
  dataDestination: { endpointType: 'File' as const, endpoint: 'inbox' },
});

/**
 * The task queues the DataFlow ran on, from its recorded history: its workflow tasks (its provisioning
 * and release run as local activities of the worker that runs them) and any activity it scheduled.
 */
async function activityQueues(processId: string): Promise<Set<string>> {
  const history = await cluster.client.workflow.getHandle(dataFlowWorkflowId('consumer', processId)).fetchHistory();
  return new Set(
    (history.events ?? []).flatMap((e) => {
      const queue = e.workflowExecutionStartedEventAttributes?.taskQueue?.name ?? e.activityTaskScheduledEventAttributes?.taskQueue?.name;
      return queue ? [queue] : [];
    }),
  );
}

/** Waits until the provider's transfer activity has started on a worker. */
async function transferRunning(providerPid: string): Promise<void> {
  const flow = cluster.client.workflow.getHandle(dataFlowWorkflowId('provider', providerPid));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const pending = (await flow.describe()).raw.pendingActivities ?? [];
    // PENDING_ACTIVITY_STATE_STARTED = 2
    if (pending.some((a) => a.activityType?.name === 'transfer' && a.state === 2)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the provider's transfer of ${providerPid} did not start`);
}

describe('address rewriting and instance affinity', () => {
  it('spreads flows over both instances; each flow is provisioned, delivered and released on its own instance', async () => {
    const ids = ['flow-1', 'flow-2', 'flow-3', 'flow-4', 'flow-5', 'flow-6'];
    await Promise.all(ids.map((id) => cluster.ferry.startTransfer(request(id, 'data'))));
    const used = new Set<string>();
    for (const id of ids) {
      expect((await cluster.ferry.result('consumer', id)).state).toBe('COMPLETED');
      const status = await cluster.ferry.status('consumer', id);
      const instance = status.dataPlane!.id;
      used.add(instance);
      const other = instances.find((i) => i !== instance)!;
      // the rewritten address is inside the provisioning instance's root, and the bytes are there
      const dir = path.join(rootOf(instance), 'inbox', id);
      expect(status.dataDestination?.endpoint).toBe(dir);
      expect(await sha256File(path.join(dir, 'data.bin'))).toBe(asset.sha256);
      expect(existsSync(path.join(rootOf(other), 'inbox', id))).toBe(false);
      // the DataFlow and all its activities ran on that instance's queue
      expect((await flowStatus(cluster.client, 'consumer', id)).instanceId).toBe(instance);
      expect([...(await activityQueues(id))]).toEqual([dataPlaneTaskQueue(instance)]);
    }
    expect(used).toEqual(new Set(instances));
  });

  it('suspend, resume and terminate reach the instance that provisioned', async () => {
    const id = 'flow-later-calls';
    await cluster.ferry.startTransfer(request(id, 'slow'));
    const providerPid = await providerPidOf(cluster.ferry, 'consumer', id);
    await cluster.ferry.waitForState('consumer', id, ['STARTED']);
    await cluster.ferry.waitForState('provider', providerPid, ['STARTED']);
    const instance = (await cluster.ferry.status('consumer', id)).dataPlane!.id;
    const dir = path.join(rootOf(instance), 'inbox', id);
    expect(existsSync(dir)).toBe(true);

    await cluster.ferry.suspend('consumer', id);
    await cluster.ferry.waitForState('consumer', id, ['SUSPENDED']);
    await cluster.ferry.resume('consumer', id);
    await cluster.ferry.waitForState('consumer', id, ['STARTED']);
    // the provider pushes again before we terminate: a push that only begins after the consumer
    // released its directory would create it anew (see the note on the File push destination)
    await cluster.ferry.waitForState('provider', providerPid, ['STARTED']);
    await transferRunning(providerPid);
    await cluster.ferry.terminate('consumer', id, 'enough');
    expect((await cluster.ferry.result('consumer', id)).state).toBe('TERMINATED');

    // every provisioning and deprovisioning of the flow ran on the one instance, which removed its directory
    expect([...(await activityQueues(id))]).toEqual([dataPlaneTaskQueue(instance)]);
    const flow = await flowStatus(cluster.client, 'consumer', id);
    expect(flow.history.map((h) => h.state)).toEqual(expect.arrayContaining(['PROVISIONED', 'SUSPENDED', 'DEPROVISIONED', 'TERMINATED']));
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(path.join(rootOf(instance), 'inbox'))).not.toContain(id);
  });
});
