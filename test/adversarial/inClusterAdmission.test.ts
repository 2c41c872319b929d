import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataFlowWorkflowId, inClusterAddress } from '../../src/ids.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { providerPidFor } from '../../src/processStart.js';
import { makeAsset } from '../support/transfers.js';

/**
 * In-cluster transfers are admitted like DSP ones (defect 10, last part): the consumer's worker
 * starts the provider's process without the provider's config, so the provider's own worker admits
 * the request (src/admission.ts, in `openTransfer`, the first step of its TransferProcess).
 */
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster();
  makeAsset(cluster.root, 'provider/assets/a.bin', 64 * 1024);
  makeAsset(cluster.root, 'provider/assets/b.bin', 64 * 1024);
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.controlPlane({ connectorId: 'intruder', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }] }),
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }],
      assets: {
        a: { endpointType: 'File', endpoint: path.join(cluster.root, 'provider/assets/a.bin') },
        b: { endpointType: 'File', endpoint: path.join(cluster.root, 'provider/assets/b.bin') },
      },
      agreements: { 'ag-a': { assetId: 'a', counterparty: 'consumer' } },
    }),
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [] }),
  ]);
});

afterAll(async () => cluster?.shutdown());

const request = (connectorId: string, processId: string, agreementId: string, assetId: string) => ({
  connectorId,
  processId,
  counterpartyAddress: inClusterAddress('provider'),
  agreementId,
  assetId,
  transferType: 'File-PUSH' as const,
  dataDestination: { endpointType: 'File' as const, endpoint: `consumer/${processId}` },
});

/** The transfer ends TERMINATED and the provider never moved a byte (no DataFlow of its process). */
async function refused(connectorId: string, processId: string): Promise<void> {
  const result = await cluster.ferry.result(connectorId, processId);
  expect(result.state).toBe('TERMINATED');
  const providerPid = providerPidFor(inClusterAddress(connectorId), processId);
  expect((await cluster.ferry.result('provider', providerPid)).state).toBe('TERMINATED');
  await expect(cluster.client.workflow.getHandle(dataFlowWorkflowId('provider', providerPid)).describe()).rejects.toThrow(/not found/i);
}

describe('in-cluster requests are admitted by the provider', () => {
  it('a request under an agreement with this consumer, for its asset, completes', async () => {
    await cluster.ferry.startTransfer(request('consumer', 'ok-1', 'ag-a', 'a'));
    expect(await cluster.ferry.result('consumer', 'ok-1')).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
  });

  it('an agreement nobody made is refused before any byte moves', async () => {
    await cluster.ferry.startTransfer(request('consumer', 'made-up-1', 'made-up', 'a'));
    await refused('consumer', 'made-up-1');
  });

  it("another connector's agreement is refused", async () => {
    await cluster.ferry.startTransfer(request('intruder', 'intruder-1', 'ag-a', 'a'));
    await refused('intruder', 'intruder-1');
  });

  it('an asset the agreement does not cover is refused', async () => {
    await cluster.ferry.startTransfer(request('consumer', 'other-asset-1', 'ag-a', 'b'));
    await refused('consumer', 'other-asset-1');
  });
});
