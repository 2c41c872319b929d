import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidRequestError, type TransferRequest } from '../../src/client.js';
import { controlPlaneTaskQueue, dataFlowWorkflowId, inClusterAddress, transferProcessWorkflowId } from '../../src/ids.js';
import { durationMs, TRANSFER_SETTINGS_DEFAULTS } from '../../src/settings.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { until } from '../support/loopback.js';
import { historyPayloads, makeAsset, statesOf } from '../support/transfers.js';

/** Callback failures, stale waits and bad input, on a real cluster and a real provisioning service. */
let cluster: Cluster;
let flaky: ProvisioningService;
let silent: ProvisioningService;

beforeAll(async () => {
  cluster = await startCluster();
  flaky = await startProvisioningService({ mode: 'async-fail', fileRoot: cluster.root });
  silent = await startProvisioningService({ mode: 'never', fileRoot: cluster.root });
  makeAsset(cluster.root, 'assets/a.bin', 256 * 1024);
  const assets = { a: { endpointType: 'File' as const, endpoint: path.join(cluster.root, 'assets/a.bin'), endpointProperties: [] } };
  const staging = (url: string) => [{ kind: 'http' as const, name: 'staging', url, side: 'destination' as const, endpointTypes: ['File'] }];
  await Promise.all([
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }],
      assets,
      agreements: { 'agreement-flaky': { assetId: 'a', counterparty: 'flaky' }, 'agreement-silent': { assetId: 'a', counterparty: 'silent' } },
    }),
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [] }),
    cluster.controlPlane({ connectorId: 'flaky', dataPlanes: [{ id: 'flaky-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'flaky-dp', fileRoot: cluster.root, provisioners: staging(flaky.url) }),
    // the data plane's own timer is long: the control plane's stale detection must act first
    cluster.controlPlane({ connectorId: 'silent', dataPlanes: [{ id: 'silent-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'silent-dp', fileRoot: cluster.root, provisioners: staging(silent.url), dataFlow: { provisionTimeout: '10m' } }),
  ]);
});

afterAll(async () => {
  await flaky?.close();
  await silent?.close();
  await cluster?.shutdown();
});

const request = (connectorId: string, processId: string, settings: TransferRequest['settings']): TransferRequest => ({
  connectorId,
  processId,
  counterpartyAddress: inClusterAddress('provider'),
  agreementId: `agreement-${connectorId}`,
  assetId: 'a',
  transferType: 'File-PUSH',
  dataDestination: { endpointType: 'File', endpoint: `out/${processId}` },
  settings,
});

describe('failed callbacks', () => {
  it('a failed provisioning callback re-sends prepare with backoff, and the retry succeeds', async () => {
    flaky.setMode('async-fail');
    // the failed callback is held until the service has recovered: the re-sent prepare then finds it
    // recovered however late it comes (setting the mode after the callback raced the 2 s backoff)
    flaky.setAutoRelease(false);
    const requestsBefore = flaky.requests.length;
    const { processId } = await cluster.ferry.startTransfer(request('flaky', 'retry-ok', { callbackRetries: 2, retryInitialInterval: '2s' }));
    await flaky.waitForRequests(requestsBefore + 1); // taken in async-fail mode
    flaky.setMode('async');
    const [failed] = await until('the failed callback, held', async () => {
      const sent = await flaky.releasePending();
      return sent.length ? sent : undefined;
    });
    flaky.setAutoRelease(true);
    expect(failed).toMatchObject({ op: 'provision', body: { ok: false } });
    const result = await cluster.ferry.result('flaky', processId);
    expect(result.state).toBe('COMPLETED');
    const status = await cluster.ferry.status('flaky', processId);
    expect(statesOf(status).slice(0, 3)).toEqual(['INITIAL', 'PREPARATION_REQUESTED', 'REQUESTING']);
    expect(status.history.some((h) => /failed prepare .*retry 1\/2/.test(h.note ?? ''))).toBe(true);
    expect(flaky.requests.filter((r) => r.op === 'provision' && r.body.flowId === processId)).toHaveLength(2);
  });

  it('when retries are exhausted the process ends TERMINATED with the reason', async () => {
    flaky.setMode('async-fail');
    const { processId } = await cluster.ferry.startTransfer(request('flaky', 'retry-exhausted', { callbackRetries: 1, retryInitialInterval: '200ms' }));
    const result = await cluster.ferry.result('flaky', processId);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/data plane failed prepare 2 times: provisioner staging failed: fixture provisioning failed/);
    const status = await cluster.ferry.status('flaky', processId);
    expect(status.reason).toBe(result.reason);
    expect(statesOf(status)).toEqual(expect.arrayContaining(['PREPARATION_REQUESTED', 'TERMINATED']));
    expect(statesOf(status)).not.toContain('REQUESTING');
  });
});

describe('non-retryable provisioner errors', () => {
  it('a provisioning service that rejects the request fails fast: no activity retries, one request per signaling call', async () => {
    flaky.setMode('reject');
    const { processId } = await cluster.ferry.startTransfer(request('flaky', 'rejected', { callbackRetries: 1, retryInitialInterval: '200ms' }));
    const result = await cluster.ferry.result('flaky', processId);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/fixture rejected the provision request/);
    expect(flaky.requests.filter((r) => r.op === 'provision' && r.body.flowId === processId)).toHaveLength(2);
  });
});

describe('secrets', () => {
  it('credentials in addresses never reach a history in plain; queries mask them', async () => {
    flaky.setMode('async');
    const { processId, workflowId } = await cluster.ferry.startTransfer({
      ...request('flaky', 'with-secret', undefined),
      dataDestination: { endpointType: 'File', endpoint: 'out/with-secret', endpointProperties: [{ name: 'authorization', value: 'Bearer very-secret-token-1234' }] },
    });
    expect((await cluster.ferry.result('flaky', processId)).state).toBe('COMPLETED');
    const status = await cluster.ferry.status('flaky', processId);
    expect(status.dataDestination?.endpointProperties).toContainEqual({ name: 'authorization', value: '***' });
    const providerPid = status.counterpartyPid!;
    const ids = [workflowId, transferProcessWorkflowId('provider', providerPid), dataFlowWorkflowId('flaky', processId), dataFlowWorkflowId('provider', providerPid)];
    for (const id of ids) {
      const payloads = await historyPayloads(cluster.client, id);
      expect(payloads).not.toContain('very-secret-token');
    }
    // the provisioning service, which needs it, got the credential in plain
    const sent = flaky.requests.find((r) => r.op === 'provision' && r.body.flowId === processId)!;
    expect(JSON.stringify(sent.body)).toContain('Bearer very-secret-token-1234');
  });
});

describe('stale waits', () => {
  it('a provisioner that never calls back: ask again, then TERMINATED "data plane did not answer", within the timers', async () => {
    const { processId } = await cluster.ferry.startTransfer(request('silent', 'stale-1', { requestedTimeout: '1s', staleRetries: 2 }));
    const result = await cluster.ferry.result('silent', processId);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/data plane did not answer prepare after 3 waits of 1s/);
    const status = await cluster.ferry.status('silent', processId);
    const staleNotes = status.history.filter((h) => h.note?.startsWith('stale PREPARATION_REQUESTED'));
    expect(staleNotes.map((h) => h.note)).toEqual([
      expect.stringMatching(/\(1\/2\): data flow PROVISION_REQUESTED; asking again/),
      expect.stringMatching(/\(2\/2\): data flow PROVISION_REQUESTED; asking again/),
    ]);
    // three waits of 1 s between entering PREPARATION_REQUESTED and giving up
    const entered = Date.parse(status.history.find((h) => h.state === 'PREPARATION_REQUESTED')!.at);
    const ended = Date.parse(status.history.at(-1)!.at);
    expect(ended - entered).toBeGreaterThanOrEqual(3000);
    // the configured 1 s waits, not the default ones (a bound that is no margin: a loaded machine may run the 3 s late)
    expect(ended - entered).toBeLessThan(durationMs(TRANSFER_SETTINGS_DEFAULTS.requestedTimeout));
    // re-sending the idempotent prepare did not provision twice
    expect(silent.requests.filter((r) => r.op === 'provision' && r.body.flowId === processId)).toHaveLength(1);
  });
});

describe('bad input', () => {
  const attempts: [string, unknown, RegExp][] = [
    ['missing fields', { connectorId: 'flaky', transferType: 'File-PUSH' }, /counterpartyAddress|agreementId|dataDestination/],
    ['unknown address type', { ...request('flaky', 'bad-type', undefined), dataDestination: { endpointType: 'S3', endpoint: 'bucket' } }, /unknown endpointType "S3"/],
    ['a File path escaping the root', { ...request('flaky', 'bad-path', undefined), dataDestination: { endpointType: 'File', endpoint: '../../etc' } }, /must be a relative path inside the data plane's file root/],
    ['an absolute File path', { ...request('flaky', 'bad-abs', undefined), dataDestination: { endpointType: 'File', endpoint: '/etc' } }, /relative path inside/],
    ['an unknown transfer type', { ...request('flaky', 'bad-format', undefined), transferType: 'Carrier-Pigeon' }, /unsupported transferType "Carrier-Pigeon"/],
    ['a bad process id', { ...request('flaky', 'has space', undefined) }, /ids use letters/],
    ['a bad timer', { ...request('flaky', 'bad-timer', { requestedTimeout: 'soon' }) }, /duration must look like/],
  ];
  it.each(attempts)('%s: a clear error at the client, no workflow started', async (_name, raw, message) => {
    await expect(cluster.ferry.startTransfer(raw as TransferRequest)).rejects.toThrow(InvalidRequestError);
    await expect(cluster.ferry.startTransfer(raw as TransferRequest)).rejects.toThrow(message);
    const id = (raw as { processId?: string }).processId;
    if (id) await expect(cluster.client.workflow.getHandle(transferProcessWorkflowId('flaky', id)).describe()).rejects.toThrow(/not found/i);
  });

  it('input that bypasses the client fails that workflow with a clear error; the worker keeps serving', async () => {
    const handle = await cluster.client.workflow.start('transferProcess', {
      workflowId: 'raw-bad-input',
      taskQueue: controlPlaneTaskQueue('flaky'),
      args: [{ role: 'CONSUMER', connectorId: 'flaky' }],
    });
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect(String((error as WorkflowFailedError).cause?.message)).toMatch(/invalid transfer process input/);
    // the same worker still runs transfers
    flaky.setMode('async');
    const { processId } = await cluster.ferry.startTransfer(request('flaky', 'after-bad-input', undefined));
    expect((await cluster.ferry.result('flaky', processId)).state).toBe('COMPLETED');
  });

  it('an asset the agreement does not cover (unknown to the provider): the provider refuses with the reason and the consumer hears it', async () => {
    flaky.setMode('async');
    const { processId } = await cluster.ferry.startTransfer({ ...request('flaky', 'no-such-asset', undefined), assetId: 'missing' });
    const result = await cluster.ferry.result('flaky', processId);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/agreement agreement-flaky does not cover asset missing/);
  });
});
