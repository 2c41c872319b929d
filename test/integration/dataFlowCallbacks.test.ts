import { WithStartWorkflowOperation } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataFlowStatusQuery, prepareUpdate, type DataFlowInput } from '../../src/DataFlow.js';
import { dataFlowWorkflowId, dataPlaneTaskQueue } from '../../src/ids.js';
import { startCluster, type Cluster } from '../support/cluster.js';

/**
 * The DataFlow's callback to the control plane is bounded: when it cannot be delivered the flow
 * goes FAILED, and the control plane's re-sent call (what its stale detection does) still gets
 * the answer, at once.
 */
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster();
  await cluster.dataPlane({ instanceId: 'dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }], dataFlow: { callbackMaxAttempts: 2 } });
});
afterAll(async () => cluster?.shutdown());

describe('DataFlow callbacks', () => {
  it('an undeliverable callback is an error on the flow, not a new state; a re-sent prepare answers synchronously with the provisioned address', async () => {
    const input: DataFlowInput = {
      flowId: 'orphan-1',
      connectorId: 'consumer',
      processId: 'orphan-1',
      role: 'CONSUMER',
      instanceId: 'dp',
      callbackWorkflowId: 'transfer-consumer-no-such-process',
    };
    const prepare = () =>
      cluster.client.workflow.executeUpdateWithStart(prepareUpdate, {
        args: [{ transferType: 'File-PUSH', destination: { endpointType: 'File', endpoint: 'inbox', endpointProperties: [] } }],
        startWorkflowOperation: new WithStartWorkflowOperation('dataFlow', {
          workflowId: dataFlowWorkflowId('consumer', 'orphan-1'),
          taskQueue: dataPlaneTaskQueue('dp'),
          args: [input],
          workflowIdConflictPolicy: 'USE_EXISTING',
        }),
      });
    expect(await prepare()).toEqual({ state: 'PROVISIONING', async: true });

    const handle = cluster.client.workflow.getHandle(dataFlowWorkflowId('consumer', 'orphan-1'));
    const deadline = Date.now() + 30_000;
    let status = await handle.query(dataFlowStatusQuery);
    while (!status.error && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      status = await handle.query(dataFlowStatusQuery);
    }
    // provisioning did succeed: the flow says so, and says that nobody heard it (the control plane's stale check asks again)
    expect(status.state).toBe('PROVISIONED');
    expect(status.error).toMatch(/callback to control plane failed: transfer process transfer-consumer-no-such-process is gone/);
    expect(status.history.map((h) => h.state)).toEqual(['RECEIVED', 'PROVISIONING', 'PROVISIONED', 'PROVISIONED']);

    // the resource is held: asking again provisions nothing more and answers at once
    const again = await prepare();
    expect(again).toMatchObject({ state: 'PROVISIONED', async: false, dataAddress: { endpointType: 'File', endpoint: `${cluster.root}/inbox/orphan-1` } });
    expect((await handle.query(dataFlowStatusQuery)).resources).toHaveLength(1);
  });
});
