import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataFlowWorkflowId, inClusterAddress } from '../../src/ids.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { makeAsset, providerPidOf, sha256File } from '../support/transfers.js';

/**
 * Issue 9: a push slower than its heartbeat timeout is alive, not dead. The provider's data plane is
 * capped at 64 KiB/s and the heartbeat timeout scaled down to 10 s (30 s by default, with heartbeats
 * every 500 ms instead of 1 s): 1.5 MiB take 24 s, more than two heartbeat timeouts, in which no
 * 4 MiB boundary is ever crossed. It completes in one attempt. (At 3 s, heartbeats sent at most every
 * second left 2 s of slack: a loaded machine could stall the worker that long and retry the push.)
 */
let cluster: Cluster;
let asset: { file: string; sha256: string };

beforeAll(async () => {
  cluster = await startCluster();
  asset = makeAsset(cluster.root, 'assets/slow.bin', 1536 * 1024);
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }] }),
    cluster.controlPlane({ connectorId: 'provider', dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }], assets: { slow: { endpointType: 'File', endpoint: asset.file, endpointProperties: [] } }, agreements: { 'agreement-1': { assetId: 'slow', counterparty: 'consumer' } } }),
    cluster.dataPlane({
      instanceId: 'provider-dp',
      fileRoot: cluster.root,
      provisioners: [],
      rateLimitBytesPerSec: 64 * 1024,
      dataFlow: { transferHeartbeatTimeout: '10s', transferHeartbeatInterval: '500ms' },
    }),
  ]);
});

afterAll(async () => {
  await cluster?.shutdown();
});

describe('a slow push', () => {
  it('a 64 KiB/s push of 1.5 MiB with a 10 s heartbeat timeout completes in one attempt', async () => {
    const { processId } = await cluster.ferry.startTransfer({
      connectorId: 'consumer',
      counterpartyAddress: inClusterAddress('provider'),
      agreementId: 'agreement-1',
      assetId: 'slow',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'inbox' },
    });
    const result = await cluster.ferry.result('consumer', processId);
    expect(result.state).toBe('COMPLETED');
    const status = await cluster.ferry.status('consumer', processId);
    expect(await sha256File(path.join(status.dataDestination!.endpoint, 'slow.bin'))).toBe(asset.sha256);
    const providerPid = await providerPidOf(cluster.ferry, 'consumer', processId);
    const history = await cluster.client.workflow.getHandle(dataFlowWorkflowId('provider', providerPid)).fetchHistory();
    const attempts = (history.events ?? []).flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes] : []));
    // every activity of the flow ran once: no heartbeat timeout, no retry
    expect(attempts.length).toBeGreaterThan(0);
    expect(attempts.every((a) => (a.attempt ?? 1) === 1)).toBe(true);
    // no fixed lifetime, no attempt count from Temporal: the activity keeps its own budget
    // (attempts in a row without progress), so a push that runs for days is never cut off
    const scheduled = (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name === 'transfer' ? [e.activityTaskScheduledEventAttributes] : []));
    expect(scheduled).toHaveLength(1);
    expect(scheduled[0]!.retryPolicy?.maximumAttempts ?? 0).toBe(0);
    expect(Number(scheduled[0]!.startToCloseTimeout?.seconds ?? 0)).toBeGreaterThanOrEqual(365 * 24 * 3600);
  });
});
