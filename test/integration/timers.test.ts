import path from 'node:path';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FerryClient } from '../../src/client.js';
import { dataFlowStatusQuery, prepareUpdate } from '../../src/DataFlow.js';
import { dataFlowWorkflowId, dataPlaneTaskQueue, inClusterAddress, transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor } from '../../src/processStart.js';
import type { RunningControlPlane } from '../../worker/controlPlaneWorker.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { makeAsset, providerPidOf, statesOf, workflowHealth } from '../support/transfers.js';

/**
 * Every timer path, with short configured timers on a real dev server: the waits of REQUESTED and
 * SUSPENDED, the DataFlow's idle and release timers, and the STARTED watchdog (a data flow gone or
 * ended behind the process's back, a counterparty gone, a completion message that never arrived).
 */
let cluster: Cluster;
let never: ProvisioningService;
let consumerDsp: RunningControlPlane;
let consumerDspConfig: Parameters<Cluster['controlPlane']>[0];
let dspConsumer: FerryClient;
let dspProvider: FerryClient;
let providerUrl: string;
const TOKENS = { c2p: 'consumer-presents-this-token', p2c: 'provider-presents-this-token' };

beforeAll(async () => {
  cluster = await startCluster({ namespaces: ['tc-ns', 'tp-ns'] });
  never = await startProvisioningService({ mode: 'never', fileRoot: cluster.root });
  makeAsset(cluster.root, 'assets/t.bin', 16 * 1024 * 1024);
  const assets = { t: { endpointType: 'File' as const, endpoint: path.join(cluster.root, 'assets/t.bin'), endpointProperties: [] } };
  const pullTypes = ['File-PUSH', 'HttpData-PULL'] as const;
  // lostAfter 10 s, not 3 s: a worker a loaded machine stalls for 3 s would read as a lost counterparty
  // or data plane and end a STARTED transfer of another test with the wrong reason
  await Promise.all([
    cluster.controlPlane({ connectorId: 'tc', dataPlanes: [{ id: 'tc-dp', transferTypes: [...pullTypes] }], watchdog: { interval: '1s', lostAfter: '10s' } }),
    cluster.dataPlane({ instanceId: 'tc-dp', fileRoot: cluster.root, provisioners: [] }),
    cluster.controlPlane({
      connectorId: 'tp',
      dataPlanes: [{ id: 'tp-dp', transferTypes: [...pullTypes] }],
      assets,
      agreements: { 'agreement-t': { assetId: 't', counterparty: 'tc' } },
      watchdog: { interval: '1s', lostAfter: '10s' },
    }),
    cluster.dataPlane({ instanceId: 'tp-dp', fileRoot: cluster.root, provisioners: [], publicApi: { host: '127.0.0.1', port: 0 }, rateLimitBytesPerSec: 2 * 1024 * 1024 }),
    // a data plane whose release service never calls back, with short timers
    cluster.dataPlane({
      instanceId: 'slow-dp',
      fileRoot: cluster.root,
      provisioners: [{ kind: 'http', name: 'never', url: never.url, side: 'destination', endpointTypes: ['File'] }],
      dataFlow: { idleTimeout: '3s', deprovisionTimeout: '3s', provisionTimeout: '1m' },
    }),
  ]);
  // two connectors over DSP: a consumer (restartable, on a fixed port) and a provider with a manual-start agreement
  const [cPort, pPort] = [await freePort(), await freePort()];
  const consumerUrl = `http://127.0.0.1:${cPort}/dsp`;
  providerUrl = `http://127.0.0.1:${pPort}/dsp`;
  consumerDspConfig = {
    namespace: 'tc-ns',
    connectorId: 'dc',
    dataPlanes: [{ id: 'dc-dp', transferTypes: [...pullTypes] }],
    watchdog: { interval: '1s', lostAfter: '1m' },
    dsp: { host: '127.0.0.1', port: cPort, publicUrl: consumerUrl, counterparties: [{ id: 'dp', address: providerUrl, inboundToken: TOKENS.p2c, outboundToken: TOKENS.c2p }], requestTimeoutMs: 2000 },
  };
  [consumerDsp] = await Promise.all([
    cluster.controlPlane(consumerDspConfig),
    cluster.dataPlane({ namespace: 'tc-ns', instanceId: 'dc-dp', fileRoot: cluster.root, provisioners: [] }),
    cluster.controlPlane({
      namespace: 'tp-ns',
      connectorId: 'dp',
      dataPlanes: [{ id: 'dp-dp', transferTypes: [...pullTypes] }],
      assets,
      // 20 s to deliver a message (5 attempts of at most 2 s each), not 3 s: a consumer endpoint a loaded
      // machine slows past 2 s once would leave the termination of the held test undelivered
      transfer: { counterpartyTimeout: '6s', counterpartyRetryBudget: '20s' },
      dsp: {
        host: '127.0.0.1',
        port: pPort,
        publicUrl: providerUrl,
        counterparties: [{ id: 'dc', address: consumerUrl, inboundToken: TOKENS.c2p, outboundToken: TOKENS.p2c }],
        agreements: { held: { assetId: 't', counterparty: 'dc', start: 'manual' }, pull: { assetId: 't', counterparty: 'dc' } },
        requestTimeoutMs: 2000,
      },
    }),
    cluster.dataPlane({ namespace: 'tp-ns', instanceId: 'dp-dp', fileRoot: cluster.root, provisioners: [], publicApi: { host: '127.0.0.1', port: 0 } }),
  ]);
  dspConsumer = cluster.clientFor('tc-ns').ferry;
  dspProvider = cluster.clientFor('tp-ns').ferry;
});

afterAll(async () => {
  await never?.close();
  await cluster?.shutdown();
});

const pull = (processId: string, settings = {}) => ({
  connectorId: 'tc',
  processId,
  counterpartyAddress: inClusterAddress('tp'),
  agreementId: 'agreement-t',
  assetId: 't',
  transferType: 'HttpData-PULL' as const,
  ...(Object.keys(settings).length ? { settings } : {}),
});

describe('REQUESTED and SUSPENDED wait with a timer', () => {
  it('counterpartyTimeout: a consumer whose provider never starts ends TERMINATED and tells it', async () => {
    const { processId } = await dspConsumer.startTransfer({ connectorId: 'dc', processId: 'wait-1', counterpartyAddress: providerUrl, agreementId: 'held', assetId: 't', transferType: 'HttpData-PULL', settings: { counterpartyTimeout: '2s' } });
    expect(await dspConsumer.result('dc', processId)).toEqual({ state: 'TERMINATED', reason: 'provider did not start within 2s' });
    await dspProvider.waitForState('dp', providerPidFor('dc', processId), ['TERMINATED']);
    const provider = await dspProvider.result('dp', providerPidFor('dc', processId));
    expect(provider.state).toBe('TERMINATED');
    expect(provider.reason).toBe('terminated by counterparty: provider did not start within 2s');
  });

  it('counterpartyTimeout: a provider held for a start command that never comes ends TERMINATED and tells the consumer', async () => {
    const { processId } = await dspConsumer.startTransfer({ connectorId: 'dc', processId: 'wait-2', counterpartyAddress: providerUrl, agreementId: 'held', assetId: 't', transferType: 'HttpData-PULL' });
    // the provider's process exists (it is REQUESTED for 6 s only: a loaded machine may poll past that window)
    await dspProvider.waitForState('dp', providerPidFor('dc', processId), ['REQUESTED', 'TERMINATED']);
    expect(await dspProvider.result('dp', providerPidFor('dc', processId))).toEqual({ state: 'TERMINATED', reason: 'no start command within 6s' });
    expect((await dspConsumer.result('dc', processId)).reason).toBe('terminated by counterparty: no start command within 6s');
  });

  it('suspendedTimeout: a suspension never resumed ends TERMINATED on both sides', async () => {
    const { processId } = await cluster.ferry.startTransfer(pull('susp-1', { suspendedTimeout: '2s' }));
    await cluster.ferry.waitForState('tc', processId, ['STARTED']);
    await cluster.ferry.suspend('tc', processId, 'pause');
    expect(await cluster.ferry.result('tc', processId)).toEqual({ state: 'TERMINATED', reason: 'not resumed within 2s' });
    const providerPid = (await cluster.ferry.status('tc', processId)).counterpartyPid!;
    expect((await cluster.ferry.result('tp', providerPid)).reason).toBe('terminated by counterparty: not resumed within 2s');
  });
});

describe('the DataFlow waits with timers too', () => {
  const flow = (id: string) => ({ flowId: id, connectorId: 'slow', processId: id, role: 'CONSUMER' as const, instanceId: 'slow-dp', callbackWorkflowId: `transfer-slow-${id}` });
  const prepare = (id: string) =>
    cluster.client.workflow.executeUpdateWithStart(prepareUpdate, {
      args: [{ transferType: 'File-PUSH', destination: { endpointType: 'File', endpoint: `slow/${id}`, endpointProperties: [] } }],
      startWorkflowOperation: new WithStartWorkflowOperation('dataFlow', {
        workflowId: dataFlowWorkflowId('slow', id),
        taskQueue: dataPlaneTaskQueue('slow-dp'),
        args: [flow(id)],
        workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    });

  it('idleTimeout: a flow nobody comes back for ends, releasing what it holds; deprovisionTimeout: a release never confirmed ends DEPROVISION_FAILED with the reason', async () => {
    never.setMode('sync');
    const requestsBefore = never.requests.length;
    expect(await prepare('idle-1')).toMatchObject({ async: true });
    const handle = cluster.client.workflow.getHandle(dataFlowWorkflowId('slow', 'idle-1'));
    // the service answers this provision at once and never calls back for what follows: switched once it took
    // the request (by event: PROVISIONED lasts only the 3 s idle timeout, which a loaded machine may poll past)
    await never.waitForRequests(requestsBefore + 1);
    never.setMode('never');
    // idle 3 s in PROVISIONED: terminated, then the release waits 3 s for a callback that never comes
    await expect.poll(async () => (await handle.query(dataFlowStatusQuery)).state, { timeout: 120_000 }).toBe('DEPROVISION_FAILED');
    const status = await handle.query(dataFlowStatusQuery);
    expect(status.reason).toBe('idle in PROVISIONED for 3s');
    expect(status.error).toBe('deprovisioner never/destination did not call back within 3s');
    expect(statesOf(status)).toEqual(['RECEIVED', 'PROVISIONING', 'PROVISIONED', 'TERMINATED', 'DEPROVISIONING', 'DEPROVISION_REQUESTED', 'DEPROVISION_FAILED']);
    // a repeated terminate tries the release again; this time the service answers
    never.setMode('sync');
    await cluster.client.workflow.getHandle(dataFlowWorkflowId('slow', 'idle-1')).executeUpdate('terminate', { args: [{ reason: 'retry the release' }] });
    expect(await handle.result()).toMatchObject({ state: 'DEPROVISIONED' });
    expect(await workflowHealth(cluster.client, dataFlowWorkflowId('slow', 'idle-1'))).toEqual({ defects: [], taskFailures: [] });
  });
});

describe('STARTED transfers have a watchdog (one per connector)', () => {
  it('a data flow that is gone ends the process TERMINATED with the reason, and the counterparty hears it', async () => {
    const { processId } = await cluster.ferry.startTransfer(pull('gone-1'));
    await cluster.ferry.waitForState('tc', processId, ['STARTED']);
    const run = await cluster.client.workflow.getHandle(dataFlowWorkflowId('tc', processId)).describe();
    await cluster.client.workflowService.deleteWorkflowExecution({ namespace: 'default', workflowExecution: { workflowId: run.workflowId, runId: run.runId } });
    const result = await cluster.ferry.result('tc', processId);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/^data flow gone-1 is gone from data plane tc-dp \(ref [0-9a-f]{8}\)$/);
    const providerPid = (await cluster.ferry.status('tc', processId)).counterpartyPid!;
    expect((await cluster.ferry.result('tp', providerPid)).reason).toMatch(/^terminated by counterparty: the consumer could not go on with the transfer \(ref [0-9a-f]{8}\)$/);
  });

  it('a data flow ended behind its back (an operator terminated its workflow) ends the process', async () => {
    const { processId } = await cluster.ferry.startTransfer(pull('ended-1'));
    const providerPid = await providerPidOf(cluster.ferry, 'tc', processId);
    await cluster.ferry.waitForState('tp', providerPid, ['STARTED']);
    await cluster.client.workflow.getHandle(dataFlowWorkflowId('tp', providerPid)).terminate('operator');
    const result = await cluster.ferry.result('tp', providerPid);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/data flow ended in TERMINATED without telling the process: its workflow is terminated/);
    expect((await cluster.ferry.result('tc', processId)).state).toBe('TERMINATED');
  });

  it('a counterparty whose process is gone: after lostAfter the process ends TERMINATED, "counterparty unreachable"', async () => {
    const { processId } = await cluster.ferry.startTransfer(pull('peer-gone-1'));
    const providerPid = await providerPidOf(cluster.ferry, 'tc', processId);
    await cluster.ferry.waitForState('tc', processId, ['STARTED']);
    const run = await cluster.client.workflow.getHandle(transferProcessWorkflowId('tp', providerPid)).describe();
    await cluster.client.workflowService.deleteWorkflowExecution({ namespace: 'default', workflowExecution: { workflowId: run.workflowId, runId: run.runId } });
    const result = await cluster.ferry.result('tc', processId);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/^counterparty unreachable: no answer for \d+ s/);
  });

  it('a completion message that never arrived: the consumer sees the provider COMPLETED and completes too', async () => {
    const { processId } = await dspConsumer.startTransfer({
      connectorId: 'dc',
      processId: 'lost-1',
      counterpartyAddress: providerUrl,
      agreementId: 'pull',
      assetId: 't',
      transferType: 'HttpData-PULL',
    });
    const providerPid = providerPidFor('dc', processId);
    await dspConsumer.waitForState('dc', processId, ['STARTED']);
    // the consumer's control plane (and its DSP endpoint) is down while the provider completes
    await consumerDsp.shutdown();
    await dspProvider.complete('dp', providerPid);
    const provider = await dspProvider.result('dp', providerPid);
    expect(provider.state).toBe('COMPLETED');
    expect((await dspProvider.status('dp', providerPid)).error).toMatch(/counterparty did not take TransferCompletionMessage/);
    consumerDsp = await cluster.controlPlane(consumerDspConfig);
    expect(await dspConsumer.result('dc', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    const consumer = await dspConsumer.status('dc', processId);
    expect(consumer.history.some((h) => h.note === 'completed by the counterparty (its completion message was lost)')).toBe(true);
  });
});
