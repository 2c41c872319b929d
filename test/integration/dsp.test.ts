import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FerryClient } from '../../src/client.js';
import { DSP_CONTEXT } from '../../src/dsp.js';
import { providerPidFor } from '../../src/processStart.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { makeAsset, makeEndlessAsset, sha256File, statesOf } from '../support/transfers.js';

/**
 * Two connectors that share nothing but HTTP: each its own Temporal namespace, control plane,
 * data plane and DSP endpoint on loopback. Every message between them is a DSP HTTPS request.
 */
let cluster: Cluster;
let consumer: FerryClient;
let provider: { ferry: FerryClient; client: import('@temporalio/client').Client };
let consumerUrl: string;
let deadUrl: string;
let providerUrl: string;
let asset: { file: string; sha256: string };
const TOKENS = { consumerToProvider: 'consumer-presents-this-token', providerToConsumer: 'provider-presents-this-token' };

beforeAll(async () => {
  cluster = await startCluster({ namespaces: ['consumer-ns', 'provider-ns'] });
  const [cPort, pPort, deadPort] = [await freePort(), await freePort(), await freePort()];
  consumerUrl = `http://127.0.0.1:${cPort}/dsp`;
  providerUrl = `http://127.0.0.1:${pPort}/`;
  deadUrl = `http://127.0.0.1:${deadPort}`;
  asset = makeAsset(cluster.root, 'provider/assets/a.bin', 2 * 1024 * 1024 + 3);
  // terminated in flight: a finite one (4 s at 8 MiB/s) could end before the terminate lands on a loaded machine
  makeEndlessAsset(cluster.root, 'provider/assets/slow.bin');
  await Promise.all([
    cluster.controlPlane({
      namespace: 'consumer-ns',
      connectorId: 'consumer',
      dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }],
      dsp: {
        host: '127.0.0.1',
        port: cPort,
        publicUrl: consumerUrl,
        counterparties: [
          { id: 'provider', address: providerUrl, inboundToken: TOKENS.providerToConsumer, outboundToken: TOKENS.consumerToProvider },
          { id: 'nobody', address: `http://127.0.0.1:${deadPort}`, inboundToken: 'nobody-has-this-token-x', outboundToken: 'nobody-has-this-token-y' },
        ],
        agreements: {},
        requestTimeoutMs: 2000,
      },
    }),
    cluster.dataPlane({ namespace: 'consumer-ns', instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }] }),
    cluster.controlPlane({
      namespace: 'provider-ns',
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }],
      assets: {
        a: { endpointType: 'File', endpoint: asset.file, endpointProperties: [] },
        slow: { endpointType: 'File', endpoint: path.join(cluster.root, 'provider/assets/slow.bin'), endpointProperties: [] },
      },
      dsp: {
        host: '127.0.0.1',
        port: pPort,
        publicUrl: providerUrl,
        // the consumer's address with a trailing slash: both forms must match
        counterparties: [{ id: 'consumer', address: `${consumerUrl}/`, inboundToken: TOKENS.consumerToProvider, outboundToken: TOKENS.providerToConsumer }],
        agreements: { 'agreement-a': { assetId: 'a', counterparty: 'consumer' }, 'agreement-slow': { assetId: 'slow', counterparty: 'consumer' } },
        requestTimeoutMs: 2000,
      },
    }),
    cluster.dataPlane({ namespace: 'provider-ns', instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [], rateLimitBytesPerSec: 8 * 1024 * 1024 }),
  ]);
  consumer = cluster.clientFor('consumer-ns').ferry;
  provider = cluster.clientFor('provider-ns');
});

afterAll(async () => cluster?.shutdown());

const transfer = (processId: string, agreementId = 'agreement-a', counterpartyAddress = providerUrl) => ({
  connectorId: 'consumer',
  processId,
  counterpartyAddress,
  agreementId,
  assetId: 'a',
  transferType: 'File-PUSH' as const,
  dataDestination: { endpointType: 'File' as const, endpoint: 'consumer/inbox' },
});

async function dsp(method: 'GET' | 'POST', url: string, body?: unknown, token: string | null = TOKENS.consumerToProvider) {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}
const providerAt = (p: string) => `${providerUrl.replace(/\/$/, '')}${p}`;

async function countProviderProcesses(): Promise<number> {
  return (await provider.client.workflow.count(`WorkflowType = 'transferProcess'`)).count;
}

describe('a transfer between two connectors over DSP', () => {
  it('completes; each process lives only in its own namespace; the provider answers GET with the DSP state', async () => {
    const { processId } = await consumer.startTransfer(transfer('dsp-1'));
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    const status = await consumer.status('consumer', processId);
    const providerPid = providerPidFor('consumer', processId);
    expect(status.counterpartyPid).toBe(providerPid);
    expect(await provider.ferry.result('provider', providerPid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect(statesOf(await provider.ferry.status('provider', providerPid))).toEqual(['INITIAL', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']);
    expect(await sha256File(path.join(status.dataDestination!.endpoint, 'a.bin'))).toBe(asset.sha256);
    // the provider's process is not in the consumer's namespace
    await expect(consumer.status('provider', providerPid)).rejects.toThrow(/not found/i);

    const got = await dsp('GET', providerAt(`/transfers/${providerPid}`));
    expect(got).toEqual({ status: 200, body: { '@context': [DSP_CONTEXT], '@type': 'TransferProcess', providerPid, consumerPid: processId, state: 'COMPLETED' } });
    // the consumer side answers too, to the provider's token
    const own = await dsp('GET', `${consumerUrl}/transfers/${processId}`, undefined, TOKENS.providerToConsumer);
    expect(own.body).toMatchObject({ consumerPid: processId, providerPid, state: 'COMPLETED' });
  });

  it('terminate from the consumer reaches the provider over DSP', async () => {
    const { processId } = await consumer.startTransfer({ ...transfer('dsp-terminate', 'agreement-slow'), assetId: 'slow' });
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    await provider.ferry.waitForState('provider', providerPid, ['STARTED']);
    await consumer.terminate('consumer', processId, 'changed my mind');
    expect((await consumer.result('consumer', processId)).state).toBe('TERMINATED');
    const result = await provider.ferry.result('provider', providerPid);
    expect(result).toEqual({ state: 'TERMINATED', reason: 'terminated by counterparty: changed my mind' });
  });
});

describe('the binding answers bad requests with its status codes, state unchanged', () => {
  const request = (consumerPid: string, extra: Record<string, unknown> = {}) => ({
    '@context': [DSP_CONTEXT],
    '@type': 'TransferRequestMessage',
    consumerPid,
    agreementId: 'agreement-a',
    format: 'File-PUSH',
    callbackAddress: consumerUrl,
    dataAddress: { endpointType: 'File', endpoint: 'consumer/manual' },
    ...extra,
  });

  it('serves /.well-known/dspace-version at the host root, naming the base path', async () => {
    const consumerVersions = await fetch(new URL('/.well-known/dspace-version', consumerUrl));
    expect(await consumerVersions.json()).toEqual({ protocolVersions: [{ version: '2025-1', path: '/dsp', binding: 'HTTPS' }] });
    const res = await fetch(new URL('/.well-known/dspace-version', providerUrl));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ protocolVersions: [{ version: '2025-1', path: '/', binding: 'HTTPS' }] });
  });

  it('unknown or missing caller tokens and unknown processes: 404', async () => {
    const providerPid = providerPidFor('consumer', 'dsp-1');
    expect((await dsp('GET', providerAt(`/transfers/${providerPid}`), undefined, null)).status).toBe(404);
    expect((await dsp('GET', providerAt(`/transfers/${providerPid}`), undefined, 'a-token-nobody-was-given')).status).toBe(404);
    expect((await dsp('GET', providerAt('/transfers/p-unknown'))).status).toBe(404);
    expect((await dsp('POST', providerAt('/transfers/request'), request('no-auth'), null)).status).toBe(404);
  });

  it('an unknown agreement: 400 TransferError and no workflow started', async () => {
    const before = await countProviderProcesses();
    const res = await dsp('POST', providerAt('/transfers/request'), request('bad-agreement', { agreementId: 'agreement-nobody-made' }));
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ '@type': 'TransferError', consumerPid: 'bad-agreement', code: 'UnknownAgreement' });
    expect(await countProviderProcesses()).toBe(before);
  });

  it('a malformed message: 400 TransferError, nothing started', async () => {
    const before = await countProviderProcesses();
    const missing = await dsp('POST', providerAt('/transfers/request'), { '@context': [DSP_CONTEXT], '@type': 'TransferRequestMessage', agreementId: 'agreement-a' });
    expect(missing.status).toBe(400);
    expect(missing.body).toMatchObject({ '@type': 'TransferError', code: 'InvalidMessage' });
    expect((await dsp('POST', providerAt('/transfers/request'), '{not json')).status).toBe(400);
    expect((await dsp('POST', providerAt('/transfers/request'), request('bad-context', { '@context': ['https://example.com/other'] }))).status).toBe(400);
    expect(await countProviderProcesses()).toBe(before);
  });

  it('a re-sent TransferRequestMessage is idempotent: same providerPid, one process', async () => {
    const first = await dsp('POST', providerAt('/transfers/request'), request('resent-1'));
    const second = await dsp('POST', providerAt('/transfers/request'), request('resent-1', { callbackAddress: `${consumerUrl}/` }));
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body?.providerPid).toBe(first.body?.providerPid);
    expect(first.body).toMatchObject({ '@type': 'TransferProcess', consumerPid: 'resent-1', state: 'REQUESTED' });
    // visibility is eventually consistent: wait until it lists the process, then it must list one run only
    const count = async () => (await provider.client.workflow.count(`WorkflowId = 'transfer-provider-${String(first.body?.providerPid)}'`)).count;
    await expect.poll(count, { timeout: 30_000 }).toBeGreaterThan(0);
    expect(await count()).toBe(1);
    // the provider goes on: it starts and tells our (unknown to the consumer) process; that is refused, so it terminates
    expect((await provider.ferry.result('provider', String(first.body?.providerPid))).state).toBe('TERMINATED');
  });

  it('an invalid state transition: 400 TransferError and the state is unchanged', async () => {
    const providerPid = providerPidFor('consumer', 'dsp-1');
    const res = await dsp('POST', providerAt(`/transfers/${providerPid}/suspension`), {
      '@context': [DSP_CONTEXT],
      '@type': 'TransferSuspensionMessage',
      consumerPid: 'dsp-1',
      providerPid,
      reason: ['why not'],
    });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ '@type': 'TransferError', code: 'InvalidStateTransition', providerPid });
    expect((await provider.ferry.status('provider', providerPid)).state).toBe('COMPLETED');
    // a message on the wrong path is refused as well
    const wrongPath = await dsp('POST', providerAt(`/transfers/${providerPid}/start`), { '@context': [DSP_CONTEXT], '@type': 'TransferCompletionMessage', consumerPid: 'dsp-1', providerPid });
    expect(wrongPath.status).toBe(400);
  });

  it('a terminate while the request to an unreachable counterparty retries takes effect at once, not after the retries', async () => {
    // an hour of retries with backoff; the terminate cancels them
    const { processId } = await consumer.startTransfer({ ...transfer('dsp-unreachable-terminated', 'agreement-a', deadUrl), settings: { counterpartyRetryBudget: '1h' } });
    await consumer.waitForState('consumer', processId, ['REQUESTING']);
    await consumer.terminate('consumer', processId, 'gave up waiting');
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'TERMINATED', reason: 'gave up waiting' });
    const history = (await consumer.status('consumer', processId)).history.map((h) => h.note ?? '').join('\n');
    expect(history).not.toMatch(/transfer request failed/);
  });

  it('a counterparty that cannot be reached: bounded retries, then TERMINATED with the reason', async () => {
    // a budget of 10 s, not 3 s: a first attempt a loaded machine starts only after the budget ended
    // would end it by a timeout, without the failure the reason names
    const { processId } = await consumer.startTransfer({ ...transfer('dsp-unreachable', 'agreement-a', deadUrl), settings: { counterpartyRetryBudget: '10s' } });
    const result = await consumer.result('consumer', processId);
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toMatch(/transfer request failed: fetch failed/);
    // one address nobody configured is refused at once, without retries
    const unknown = await consumer.startTransfer({ ...transfer('dsp-unknown-party', 'agreement-a', 'http://127.0.0.1:1/'), settings: { activityMaxAttempts: 5 } });
    expect((await consumer.result('consumer', unknown.processId)).reason).toMatch(/no counterparty configured for http:\/\/127.0.0.1:1\//);
  });
});
