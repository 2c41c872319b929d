import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDataFlow } from '../../activities/dataFlowCalls.js';
import { InClusterTransport } from '../../activities/transport/InClusterTransport.js';
import { dataFlowStatusQuery, prepareUpdate, type DataFlowInput } from '../../src/DataFlow.js';
import { DSP_CONTEXT } from '../../src/dsp.js';
import { dataFlowWorkflowId, dataPlaneTaskQueue, inClusterAddress, transferProcessWorkflowId } from '../../src/ids.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { flowStatus, makeAsset, processStatus, providerPidOf, statesOf, workflowHealth } from '../support/transfers.js';

/**
 * The races found between the seed table's rows, each reproduced on real servers: a provider's data
 * plane slow to stop a transfer (an HTTP source that stalls on its first request, so the push does not
 * notice its cancellation until its heartbeat timeout), repeated deliveries of one message, two
 * provisioners on one side, signaling calls queued before a flow's first task.
 */
let cluster: Cluster;
let staging: ProvisioningService;
let echo: ProvisioningService;
let bare: ProvisioningService;
let holding: ProvisioningService;
let source: Server;
let sink: Server;
const body = randomBytes(3 * 1024 * 1024 + 5);
const bodySha = createHash('sha256').update(body).digest('hex');
const stalls = new EventEmitter();
const requestsByKey = new Map<string, number>();
/** Gated sources: the first request sends a little, then waits for the test to open the gate. */
const gates = new Map<string, { open: () => void; opened: Promise<void> }>();
const gate = (key: string) => {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  gates.set(key, { open, opened });
  return open;
};
const delivered = new Map<string, string[]>();

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  cluster = await startCluster();
  staging = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  echo = await startProvisioningService({ mode: 'echo', fileRoot: cluster.root, delayMs: 300 });
  bare = await startProvisioningService({ mode: 'async-bare', fileRoot: cluster.root, delayMs: 300 });
  holding = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  // the first request of each key sends a little and then stalls until the client goes away
  source = createServer((req, res) => {
    const key = req.url ?? '/';
    const n = (requestsByKey.get(key) ?? 0) + 1;
    requestsByKey.set(key, n);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    if (n > 1) return void res.end(body);
    res.write(body.subarray(0, 64 * 1024), () => stalls.emit(key));
    const g = gates.get(key);
    if (g) void g.opened.then(() => res.end(body.subarray(64 * 1024)));
  });
  sink = createServer((req, res) => {
    const hash = createHash('sha256');
    req.on('data', (chunk: Buffer) => hash.update(chunk));
    // a push cut short (suspended) aborts its request: only complete bodies count
    req.on('error', () => undefined);
    req.on('end', () => {
      delivered.set(req.url ?? '/', [...(delivered.get(req.url ?? '/') ?? []), hash.digest('hex')]);
      res.writeHead(204).end();
    });
  });
  const sourceUrl = await listen(source);
  await listen(sink);
  makeAsset(cluster.root, 'assets/small.bin', 256 * 1024);
  const slowAssets = Object.fromEntries(
    ['r1', 'r2', 'r4', 'gc', 'gt', 'xs', 'gx'].map((k) => [k, { endpointType: 'HttpData' as const, endpoint: `${sourceUrl}/${k}`, endpointProperties: [] }]),
  );
  const fileAsset = (name: string) => ({ endpointType: 'File' as const, endpoint: path.join(cluster.root, 'assets', name), endpointProperties: [] });
  const http = (name: string, url: string, endpointTypes: string[]) => ({ kind: 'http' as const, name, url, side: 'destination' as const, endpointTypes });
  await Promise.all([
    cluster.controlPlane({ connectorId: 'c', dataPlanes: [{ id: 'c-dp', transferTypes: ['HttpData-PUSH', 'File-PUSH', 'HttpData-PULL'] }] }),
    cluster.dataPlane({ instanceId: 'c-dp', fileRoot: cluster.root, provisioners: [] }),
    // a provider whose data plane holds a provisioned resource and is slow to stop (2 s stale waits, 5 s heartbeat
    // timeout); 20 stale rounds (the most allowed), not 8: a stop a loaded machine stretches past 8 × 2 s must not end the process
    cluster.controlPlane({
      connectorId: 'p',
      dataPlanes: [{ id: 'p-dp', transferTypes: ['HttpData-PUSH'] }],
      assets: slowAssets,
      agreements: Object.fromEntries(Object.keys(slowAssets).map((k) => [`agreement-${k}`, { assetId: k, counterparty: k === 'xs' ? 'c-held' : 'c' }])),
      transfer: { requestedTimeout: '2s', staleRetries: 20 },
    }),
    // source and sink are on loopback, which a data plane reaches only when allowed
    cluster.dataPlane({ instanceId: 'p-dp', fileRoot: cluster.root, provisioners: [http('staging', staging.url, ['HttpData'])], dataFlow: { transferHeartbeatTimeout: '5s' }, allowedNetworks: ['127.0.0.0/8'] }),
    // a File provider (pushes in flight for a few seconds) and consumers with two provisioners on their destination
    cluster.controlPlane({
      connectorId: 'pf',
      dataPlanes: [{ id: 'pf-dp', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
      assets: { small: fileAsset('small.bin') },
      // in-cluster requests are admitted like DSP ones: one agreement per consumer and asset
      agreements: {
        'agreement-small': { assetId: 'small', counterparty: 'c' },
        'agreement-small-c-echo': { assetId: 'small', counterparty: 'c-echo' },
        'agreement-small-c-bare': { assetId: 'small', counterparty: 'c-bare' },
      },
    }),
    cluster.dataPlane({ instanceId: 'pf-dp', fileRoot: cluster.root, provisioners: [], rateLimitBytesPerSec: 8 * 1024 * 1024, publicApi: { host: '127.0.0.1', port: 0 } }),
    cluster.controlPlane({ connectorId: 'c-echo', dataPlanes: [{ id: 'c-echo-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'c-echo-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }, http('echo', echo.url, ['File'])] }),
    cluster.controlPlane({ connectorId: 'c-bare', dataPlanes: [{ id: 'c-bare-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'c-bare-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }, http('bare', bare.url, ['File'])] }),
    // a consumer whose data plane holds a resource for its HTTP destination, released when the test says
    cluster.controlPlane({ connectorId: 'c-held', dataPlanes: [{ id: 'c-held-dp', transferTypes: ['HttpData-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'c-held-dp', fileRoot: cluster.root, provisioners: [http('holding', holding.url, ['HttpData'])] }),
  ]);
});

afterAll(async () => {
  source?.closeAllConnections();
  source?.close();
  sink?.close();
  await Promise.all([staging?.close(), echo?.close(), bare?.close(), holding?.close()]);
  await cluster?.shutdown();
});

const sinkUrl = (key: string) => `http://127.0.0.1:${(sink.address() as AddressInfo).port}/${key}`;
const slowPush = (processId: string) => ({
  connectorId: 'c',
  processId,
  counterpartyAddress: inClusterAddress('p'),
  agreementId: `agreement-${processId}`,
  assetId: processId,
  transferType: 'HttpData-PUSH' as const,
  dataDestination: { endpointType: 'HttpData' as const, endpoint: sinkUrl(processId) },
});

/** Every workflow of a transfer: no defect, no failed workflow task. */
async function expectHealthy(consumer: string, processId: string, provider: string, providerPid: string): Promise<void> {
  const ids = [
    transferProcessWorkflowId(consumer, processId),
    dataFlowWorkflowId(consumer, processId),
    transferProcessWorkflowId(provider, providerPid),
    dataFlowWorkflowId(provider, providerPid),
  ];
  for (const id of ids) expect(await workflowHealth(cluster.client, id), id).toEqual({ defects: [], taskFailures: [] });
}

describe('a provider data plane slow to stop, with resources to release', () => {
  it('suspend then resume: SUSPENDED only once released; the stale re-sent suspend is answered async; the transfer resumes and completes', async () => {
    const stalled = once(stalls, '/r1');
    await cluster.ferry.startTransfer(slowPush('r1'));
    const providerPid = await providerPidOf(cluster.ferry, 'c', 'r1');
    await cluster.ferry.waitForState('p', providerPid, ['STARTED']);
    await stalled;

    await cluster.ferry.suspend('p', providerPid, 'r1 maintenance');
    const suspended = await cluster.ferry.waitForState('p', providerPid, ['SUSPENDED', 'TERMINATED'], 90_000);
    expect(suspended.state).toBe('SUSPENDED');
    // SUSPENDED means the data plane confirmed the release
    const flow = await flowStatus(cluster.client, 'p', providerPid);
    expect(flow.state).toBe('DEPROVISIONED');
    expect(flow.resources.map((r) => r.released)).toEqual(['suspended']);
    await cluster.ferry.waitForState('c', 'r1', ['SUSPENDED']);

    await cluster.ferry.resume('p', providerPid);
    expect(await cluster.ferry.result('c', 'r1')).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect((await cluster.ferry.result('p', providerPid)).state).toBe('COMPLETED');
    expect(delivered.get('/r1')?.at(-1)).toBe(bodySha);
    await expectHealthy('c', 'r1', 'p', providerPid);
  });

  it('terminate: TERMINATED only once the data plane released what it held', async () => {
    const stalled = once(stalls, '/r2');
    await cluster.ferry.startTransfer(slowPush('r2'));
    const providerPid = await providerPidOf(cluster.ferry, 'c', 'r2');
    await cluster.ferry.waitForState('p', providerPid, ['STARTED']);
    await stalled;

    await cluster.ferry.terminate('p', providerPid, 'r2 no longer offered');
    const ended = await cluster.ferry.waitForState('p', providerPid, ['TERMINATED'], 90_000);
    expect(ended.reason).toBe('r2 no longer offered');
    const flow = await flowStatus(cluster.client, 'p', providerPid);
    expect(flow.state).toBe('DEPROVISIONED');
    expect(flow.resources.map((r) => r.released)).toEqual([true]);
    expect((await cluster.ferry.result('c', 'r2')).state).toBe('TERMINATED');
    await expectHealthy('c', 'r2', 'p', providerPid);
  });

  it('a resume right after the local side is SUSPENDED waits for the counterparty still suspending, instead of terminating', async () => {
    const stalled = once(stalls, '/r4');
    await cluster.ferry.startTransfer(slowPush('r4'));
    const providerPid = await providerPidOf(cluster.ferry, 'c', 'r4');
    await cluster.ferry.waitForState('p', providerPid, ['STARTED']);
    await cluster.ferry.waitForState('c', 'r4', ['STARTED']);
    await stalled;

    // the consumer holds nothing: it is SUSPENDED as soon as the provider took the message; the provider is still releasing
    await cluster.ferry.suspend('c', 'r4', 'r4 pause');
    await cluster.ferry.waitForState('c', 'r4', ['SUSPENDED']);
    await cluster.ferry.resume('c', 'r4');

    expect(await cluster.ferry.result('c', 'r4')).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    // the provider ends after its data plane released what it held, which may be after the consumer ended
    expect((await cluster.ferry.result('p', providerPid)).state).toBe('COMPLETED');
    const provider = await processStatus(cluster.client, 'p', providerPid);
    expect(statesOf(provider)).toEqual(expect.arrayContaining(['SUSPENDED', 'RESUMING', 'STARTED', 'COMPLETED']));
    expect(delivered.get('/r4')?.at(-1)).toBe(bodySha);
    await expectHealthy('c', 'r4', 'p', providerPid);
  });
});

describe("a consumer's suspension crossing the provider's completion of a push", () => {
  it('the completion of a push the provider has not heard suspended is taken: both sides end COMPLETED, the bytes delivered', async () => {
    const open = gate('/xs');
    const stalled = once(stalls, '/xs');
    await cluster.ferry.startTransfer({ ...slowPush('xs'), connectorId: 'c-held' });
    const providerPid = await providerPidOf(cluster.ferry, 'c-held', 'xs');
    await cluster.ferry.waitForState('c-held', 'xs', ['STARTED']);
    await cluster.ferry.waitForState('p', providerPid, ['STARTED']);
    await stalled;

    // the consumer's suspension waits for its data plane's release, which the service holds: the provider has not heard of it
    holding.setAutoRelease(false);
    await cluster.ferry.suspend('c-held', 'xs', 'xs pause');
    await cluster.ferry.waitForState('c-held', 'xs', ['SUSPENSION_REQUESTED']);
    // meanwhile the push delivers its last bytes: the provider completes and tells the consumer
    open();
    expect(await cluster.ferry.result('p', providerPid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });

    holding.setAutoRelease(true);
    await holding.releasePending();
    expect(await cluster.ferry.result('c-held', 'xs')).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect(delivered.get('/xs')?.at(-1)).toBe(bodySha);
    // released as a completion releases (after the suspension's release)
    const flow = await flowStatus(cluster.client, 'c-held', 'xs');
    expect(flow.state).toBe('DEPROVISIONED');
    expect(flow.resources.map((r) => r.released)).toEqual([true]);
    await expectHealthy('c-held', 'xs', 'p', providerPid);
  });
});

describe('a suspension that reaches a data flow whose bytes were verified first', () => {
  it('is answered "completed" (so the process suspends, and its resume completes it), while the flow releases and after it ended', async () => {
    const open = gate('/gx');
    const stalled = once(stalls, '/gx');
    await cluster.ferry.startTransfer(slowPush('gx'));
    const providerPid = await providerPidOf(cluster.ferry, 'c', 'gx');
    await cluster.ferry.waitForState('p', providerPid, ['STARTED']);
    await stalled;
    // the provider's data flow holds its release after the bytes are verified
    staging.setAutoRelease(false);
    try {
      open();
      expect((await cluster.ferry.result('p', providerPid)).state).toBe('COMPLETED');
      const flow: DataFlowInput = { flowId: providerPid, connectorId: 'p', processId: providerPid, role: 'PROVIDER', instanceId: 'p-dp', callbackWorkflowId: transferProcessWorkflowId('p', providerPid) };
      const call = (op: 'suspend' | 'resume') =>
        callDataFlow(cluster.client, { flow, taskQueue: dataPlaneTaskQueue('p-dp'), ...(op === 'suspend' ? { op, message: { reason: 'late' } } : { op, message: { transferType: 'HttpData-PUSH' } }) });
      expect((await flowStatus(cluster.client, 'p', providerPid)).state).toMatch(/^(COMPLETED|DEPROVISIONING|DEPROVISION_REQUESTED)$/);
      expect(await call('suspend')).toMatchObject({ async: false, completed: true });
      expect(await call('resume')).toMatchObject({ async: false, completed: true });
    } finally {
      staging.setAutoRelease(true);
      await staging.releasePending();
    }
    const flowWorkflow = cluster.client.workflow.getHandle(dataFlowWorkflowId('p', providerPid));
    expect((await flowWorkflow.result()).state).toBe('DEPROVISIONED');
    const flow: DataFlowInput = { flowId: providerPid, connectorId: 'p', processId: providerPid, role: 'PROVIDER', instanceId: 'p-dp', callbackWorkflowId: transferProcessWorkflowId('p', providerPid) };
    // and once the flow has ended
    expect(await callDataFlow(cluster.client, { flow, taskQueue: dataPlaneTaskQueue('p-dp'), op: 'suspend', message: { reason: 'late' } })).toMatchObject({ async: false, completed: true });
    await expectHealthy('c', 'gx', 'p', providerPid);
  });
});

describe('complete on a push in flight', () => {
  it('is refused on either side, saying why; the push completes with its bytes verified', async () => {
    const open = gate('/gc');
    const stalled = once(stalls, '/gc');
    await cluster.ferry.startTransfer(slowPush('gc'));
    const providerPid = await providerPidOf(cluster.ferry, 'c', 'gc');
    await cluster.ferry.waitForState('c', 'gc', ['STARTED']);
    await cluster.ferry.waitForState('p', providerPid, ['STARTED']);
    await stalled; // the bytes cannot all arrive before the gate opens
    await expect(cluster.ferry.complete('c', 'gc')).rejects.toThrow(/a push completes when the provider verified its bytes/);
    await expect(cluster.ferry.complete('p', providerPid)).rejects.toThrow(/a push completes when the provider verified its bytes/);
    open();
    expect(await cluster.ferry.result('c', 'gc')).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect(delivered.get('/gc')?.at(-1)).toBe(bodySha);
    await expectHealthy('c', 'gc', 'p', providerPid);
  });
});

describe('a message delivered twice', () => {
  it('a repeated TransferCompletionMessage is answered as done, before and after the process ended: both sides end COMPLETED', async () => {
    const open = gate('/gt');
    const stalled = once(stalls, '/gt');
    await cluster.ferry.startTransfer(slowPush('gt'));
    const providerPid = await providerPidOf(cluster.ferry, 'c', 'gt');
    await cluster.ferry.waitForState('c', 'gt', ['STARTED']);
    await stalled;
    // the provider's completion, delivered twice at once (a retried delivery whose first attempt got through)
    const transport = new InClusterTransport(cluster.client);
    const completion = { '@context': [DSP_CONTEXT], '@type': 'TransferCompletionMessage' as const, consumerPid: 'gt', providerPid };
    await Promise.all([
      transport.send(inClusterAddress('c'), 'gt', completion, { messageId: 'attempt-1' }),
      transport.send(inClusterAddress('c'), 'gt', completion, { messageId: 'attempt-2' }),
    ]);
    expect((await cluster.ferry.result('c', 'gt')).state).toBe('COMPLETED');
    // and once more after the consumer's process has ended
    await transport.send(inClusterAddress('c'), 'gt', completion, { messageId: 'attempt-3' });
    // the provider's own completion, once its bytes are verified, is a repeat too: it ends COMPLETED, not TERMINATED
    open();
    expect(await cluster.ferry.result('p', providerPid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    // a message that would end it otherwise is still refused
    const termination = { ...completion, '@type': 'TransferTerminationMessage' as const, reason: [] };
    await expect(transport.send(inClusterAddress('c'), 'gt', termination)).rejects.toThrow(/has ended COMPLETED/);
  });
});

describe('a suspension and a completion crossing each other', () => {
  it('the provider suspends a pull while the consumer completes it: each refuses the other\'s message and both end TERMINATED, saying why', async () => {
    const { processId } = await cluster.ferry.startTransfer({
      connectorId: 'c',
      counterpartyAddress: inClusterAddress('pf'),
      agreementId: 'agreement-small',
      assetId: 'small',
      transferType: 'HttpData-PULL',
    });
    const providerPid = await providerPidOf(cluster.ferry, 'c', processId);
    await cluster.ferry.waitForState('c', processId, ['STARTED']);
    await cluster.ferry.waitForState('pf', providerPid, ['STARTED']);
    await Promise.all([cluster.ferry.suspend('pf', providerPid, 'crossing'), cluster.ferry.complete('c', processId)]);
    const [consumer, provider] = [await cluster.ferry.result('c', processId), await cluster.ferry.result('pf', providerPid)];
    expect([consumer.state, provider.state]).toEqual(['TERMINATED', 'TERMINATED']);
    expect(consumer.reason).toMatch(/counterparty refused TransferCompletionMessage/);
    expect(provider.reason).toMatch(/counterparty refused TransferSuspensionMessage/);
    await expectHealthy('c', processId, 'pf', providerPid);
  });
});

describe('two provisioners on one side', () => {
  it.each([
    ['echo', 'a second provisioner answering 200 with the address it was given'],
    ['bare', 'a second provisioner answering 202 without a body and calling back without an address'],
  ])('%s: %s keeps the per-flow directory the first one made', async (kind) => {
    const consumer = `c-${kind}`;
    const started = await Promise.all(
      [1, 2, 3].map(() =>
        cluster.ferry.startTransfer({
          connectorId: consumer,
          counterpartyAddress: inClusterAddress('pf'),
          agreementId: `agreement-small-${consumer}`,
          assetId: 'small',
          transferType: 'File-PUSH',
          dataDestination: { endpointType: 'File', endpoint: `two-${kind}` },
        }),
      ),
    );
    for (const { processId } of started) {
      expect((await cluster.ferry.result(consumer, processId)).state).toBe('COMPLETED');
      const status = await cluster.ferry.status(consumer, processId);
      expect(status.dataDestination?.endpoint).toBe(path.join(cluster.root, `two-${kind}`, processId));
      expect(existsSync(path.join(cluster.root, `two-${kind}`, processId, 'small.bin'))).toBe(true);
    }
    // never the requested directory itself: two transfers of one asset never write one file
    expect(existsSync(path.join(cluster.root, `two-${kind}`, 'small.bin'))).toBe(false);
  });
});

describe('signaling calls queued before a flow runs its first task', () => {
  it('three prepares sent while no data-plane worker polls: one provisioning, consistent answers, no failed task', async () => {
    const input: DataFlowInput = {
      flowId: 'queued-1',
      connectorId: 'late',
      processId: 'queued-1',
      role: 'CONSUMER',
      instanceId: 'late-dp',
      callbackWorkflowId: 'transfer-late-nobody',
    };
    const prepare = () =>
      cluster.client.workflow.executeUpdateWithStart(prepareUpdate, {
        args: [{ transferType: 'File-PUSH', destination: { endpointType: 'File', endpoint: 'queued', endpointProperties: [] } }],
        startWorkflowOperation: new WithStartWorkflowOperation('dataFlow', {
          workflowId: dataFlowWorkflowId('late', 'queued-1'),
          taskQueue: dataPlaneTaskQueue('late-dp'),
          args: [input],
          workflowIdConflictPolicy: 'USE_EXISTING',
        }),
      });
    const answers = Promise.all([prepare(), prepare(), prepare()]);
    // the updates are in the server before anything can run them
    const handle = cluster.client.workflow.getHandle(dataFlowWorkflowId('late', 'queued-1'));
    await expect.poll(() => handle.describe().then(() => true, () => false), { timeout: 30_000 }).toBe(true);
    await cluster.dataPlane({ instanceId: 'late-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }] });
    const got = await answers;
    expect(got.filter((a) => a.async)).toHaveLength(3);
    await expect.poll(async () => (await handle.query(dataFlowStatusQuery)).state, { timeout: 30_000 }).toBe('PROVISIONED');
    expect((await handle.query(dataFlowStatusQuery)).resources).toHaveLength(1);
    expect(await workflowHealth(cluster.client, dataFlowWorkflowId('late', 'queued-1'))).toEqual({ defects: [], taskFailures: [] });
  });
});
