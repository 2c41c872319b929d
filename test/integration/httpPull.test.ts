import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FerryClient } from '../../src/client.js';
import { HTTP_EDR_ENDPOINT_TYPE, property, type DataAddress } from '../../src/DataAddress.js';
import { dataFlowWorkflowId, transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor } from '../../src/processStart.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { flowStatus, historyPayloads, makeAsset, statesOf } from '../support/transfers.js';

/**
 * HttpData-PULL between two connectors over DSP: the provider's data plane issues an EDR (its
 * public endpoint and a JWT), the consumer fetches with it, and every release revokes it.
 */
let cluster: Cluster;
let consumer: FerryClient;
let provider: { ferry: FerryClient; client: import('@temporalio/client').Client };
let providerUrl: string;
let consumerUrl: string;
let asset: { file: string; sha256: string };
let bytes: Buffer;
let httpSource: Server;
const httpData = randomBytes(3 * 1024 * 1024 + 5);
const SOURCE_TOKEN = 'Bearer source-secret-of-the-provider';
const TOKENS = { consumerToProvider: 'consumer-presents-this-token', providerToConsumer: 'provider-presents-this-token' };

beforeAll(async () => {
  cluster = await startCluster({ namespaces: ['consumer-ns', 'provider-ns'] });
  const [cPort, pPort] = [await freePort(), await freePort()];
  consumerUrl = `http://127.0.0.1:${cPort}/dsp`;
  providerUrl = `http://127.0.0.1:${pPort}/dsp`;
  asset = makeAsset(cluster.root, 'provider/assets/pull.bin', 4 * 1024 * 1024 + 7);
  bytes = readFileSync(asset.file);
  httpSource = createServer((req, res) => {
    if (req.headers.authorization !== SOURCE_TOKEN) return void res.writeHead(401).end();
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m) {
      const [start, end] = [Number(m[1]), Number(m[2])];
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${httpData.length}`, 'content-length': end - start + 1 });
      return void res.end(httpData.subarray(start, end + 1));
    }
    res.writeHead(200, { 'content-type': 'application/x-test', 'content-length': httpData.length });
    res.end(httpData);
  });
  await new Promise<void>((r) => httpSource.listen(0, '127.0.0.1', r));
  const sourceUrl = `http://127.0.0.1:${(httpSource.address() as AddressInfo).port}/data`;
  const agreement = (assetId: string, extra: object = {}) => ({ assetId, counterparty: 'consumer', ...extra });
  await Promise.all([
    cluster.controlPlane({
      namespace: 'consumer-ns',
      connectorId: 'consumer',
      dataPlanes: [{ id: 'consumer-dp', transferTypes: ['HttpData-PULL'] }],
      dsp: {
        host: '127.0.0.1',
        port: cPort,
        publicUrl: consumerUrl,
        counterparties: [{ id: 'provider', address: providerUrl, inboundToken: TOKENS.providerToConsumer, outboundToken: TOKENS.consumerToProvider }],
      },
    }),
    cluster.dataPlane({ namespace: 'consumer-ns', instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [] }),
    cluster.controlPlane({
      namespace: 'provider-ns',
      connectorId: 'provider',
      dataPlanes: [
        { id: 'provider-dp', transferTypes: ['HttpData-PULL'] },
      ],
      assets: {
        file: { endpointType: 'File', endpoint: asset.file, endpointProperties: [] },
        api: { endpointType: 'HttpData', endpoint: sourceUrl, endpointProperties: [{ name: 'authorization', value: SOURCE_TOKEN }] },
      },
      dsp: {
        host: '127.0.0.1',
        port: pPort,
        publicUrl: providerUrl,
        counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: TOKENS.consumerToProvider, outboundToken: TOKENS.providerToConsumer }],
        agreements: { 'ag-file': agreement('file'), 'ag-api': agreement('api'), 'ag-held': agreement('file', { start: 'manual' }) },
      },
    }),
    cluster.dataPlane({
      namespace: 'provider-ns',
      instanceId: 'provider-dp',
      fileRoot: cluster.root,
      provisioners: [],
      publicApi: { host: '127.0.0.1', port: 0 },
    }),
  ]);
  consumer = cluster.clientFor('consumer-ns').ferry;
  provider = cluster.clientFor('provider-ns');
});

afterAll(async () => {
  await cluster?.shutdown();
  httpSource?.close();
});

const pull = (processId: string, agreementId = 'ag-file', assetId = 'file') => ({
  connectorId: 'consumer',
  processId,
  counterpartyAddress: providerUrl,
  agreementId,
  assetId,
  transferType: 'HttpData-PULL' as const,
});

async function fetchWith(edr: DataAddress, headers: Record<string, string> = {}) {
  // every token a test uses is a credential the history scan at shutdown looks for
  for (const name of ['authorization', 'refreshToken']) {
    const token = property(edr, name);
    if (token) cluster.registerSecret(token.replace(/^Bearer /, ''), `EDR ${name}`);
  }
  const res = await fetch(edr.endpoint, { headers: { authorization: property(edr, 'authorization')!, ...headers } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function startedPull(processId: string, agreementId?: string, assetId?: string) {
  await consumer.startTransfer(pull(processId, agreementId, assetId));
  await consumer.waitForState('consumer', processId, ['STARTED']);
  const edr = (await consumer.edr('consumer', processId))!;
  return { edr, providerPid: providerPidFor('consumer', processId) };
}

describe('an HttpData pull over DSP', () => {
  it('hands the consumer an EDR it fetches the file with, whole or in ranges; completion revokes it', async () => {
    const { edr, providerPid } = await startedPull('pull-1');
    expect(edr.endpointType).toBe(HTTP_EDR_ENDPOINT_TYPE);
    expect(property(edr, 'authType')).toBe('bearer');
    expect(edr.endpointProperties.map((p) => p.name).sort()).toEqual(['authType', 'authorization', 'expiresAt', 'refreshEndpoint', 'refreshToken']);
    expect(property(edr, 'refreshEndpoint')).toBe(`${edr.endpoint}/refresh`);
    // a JWT for this flow, issued to the consumer (its DSP address), for the default ten minutes
    const claims = JSON.parse(Buffer.from(property(edr, 'authorization')!.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ aud: consumerUrl, flow: providerPid, sub: providerPid, iss: 'provider-dp' });
    expect((claims.exp as number) - (claims.iat as number)).toBe(600);
    const whole = await fetchWith(edr);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(sha(whole.body)).toBe(asset.sha256);

    const part = await fetchWith(edr, { range: 'bytes=1000-1999' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${bytes.length}`);
    expect(part.body.equals(bytes.subarray(1000, 2000))).toBe(true);
    const tail = await fetchWith(edr, { range: 'bytes=-10' });
    expect(tail.body.equals(bytes.subarray(bytes.length - 10))).toBe(true);
    expect((await fetchWith(edr, { range: `bytes=${bytes.length}-` })).status).toBe(416);

    // no token, a forged one, a token with one character changed: 401
    expect((await fetch(edr.endpoint)).status).toBe(401);
    expect((await fetchWith({ ...edr, endpointProperties: [{ name: 'authorization', value: 'eyJhbGciOiJIUzI1NiJ9.e30.x' }] })).status).toBe(401);
    const token = property(edr, 'authorization')!;
    const tampered = `${token.slice(0, -2)}${token.endsWith('A') ? 'B' : 'A'}${token.slice(-1)}`;
    expect((await fetchWith({ ...edr, endpointProperties: [{ name: 'authorization', value: tampered }] })).status).toBe(401);

    // a pull that outlives its access token renews it: a new token for the same grant
    const refresh = (token: string) => fetch(property(edr, 'refreshEndpoint')!, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    const renewedRes = await refresh(property(edr, 'refreshToken')!);
    expect(renewedRes.status).toBe(200);
    const renewed = (await renewedRes.json()) as { access_token: string; refresh_token: string; expires_in: number; token_type: string };
    expect(renewed).toMatchObject({ token_type: 'Bearer', expires_in: 600 });
    const withRenewed = { ...edr, endpointProperties: [{ name: 'authorization', value: renewed.access_token }] };
    expect((await fetchWith(withRenewed, { range: 'bytes=0-0' })).status).toBe(206);
    // tokens keep to their use
    expect((await refresh(token)).status).toBe(401);
    expect((await fetchWith({ ...edr, endpointProperties: [{ name: 'authorization', value: renewed.refresh_token }] })).status).toBe(401);

    await consumer.complete('consumer', 'pull-1');
    expect(await consumer.result('consumer', 'pull-1')).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect(await provider.ferry.result('provider', providerPid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect((await fetchWith(edr)).status).toBe(403);
    // the release revoked the whole grant: renewed tokens and refresh tokens too
    expect((await fetchWith(withRenewed)).status).toBe(403);
    expect((await refresh(renewed.refresh_token)).status).toBe(403);
    expect(statesOf(await provider.ferry.status('provider', providerPid))).toEqual(['INITIAL', 'STARTUP_REQUESTED', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']);

    // The token is in no history in plain: not the consumer's, not the provider's, not their data flows'.
    for (const [client, id] of [
      [cluster.clientFor('consumer-ns').client, transferProcessWorkflowId('consumer', 'pull-1')],
      [cluster.clientFor('consumer-ns').client, dataFlowWorkflowId('consumer', 'pull-1')],
      [provider.client, transferProcessWorkflowId('provider', providerPid)],
      [provider.client, dataFlowWorkflowId('provider', providerPid)],
    ] as const) {
      const payloads = await historyPayloads(client, id);
      expect(payloads).not.toContain(token);
      expect(payloads).not.toContain(token.split('.')[2]);
      expect(payloads).not.toContain(property(edr, 'refreshToken')!.split('.')[2]);
    }
    // queries mask it too
    expect(JSON.stringify(await consumer.status('consumer', 'pull-1'))).not.toContain(token);
  });

  it('suspend from the provider revokes the token; resume issues a new EDR; terminate from the consumer revokes that one', async () => {
    const { edr, providerPid } = await startedPull('pull-2');
    expect((await fetchWith(edr, { range: 'bytes=0-9' })).status).toBe(206);
    await provider.ferry.suspend('provider', providerPid, 'maintenance');
    await consumer.waitForState('consumer', 'pull-2', ['SUSPENDED']);
    expect((await fetchWith(edr)).status).toBe(403);
    // released as a suspension releases (a terminate would release it again, for good)
    expect((await flowStatus(provider.client, 'provider', providerPid)).resources).toEqual([expect.objectContaining({ provisioner: 'edr', released: 'suspended' })]);

    await provider.ferry.resume('provider', providerPid);
    await consumer.waitForState('consumer', 'pull-2', ['STARTED']);
    const renewed = await waitFor(async () => {
      const e = (await consumer.edr('consumer', 'pull-2'))!;
      return property(e, 'authorization') !== property(edr, 'authorization') ? e : undefined;
    });
    expect((await fetchWith(edr)).status).toBe(403);
    expect(sha((await fetchWith(renewed)).body)).toBe(asset.sha256);

    await consumer.terminate('consumer', 'pull-2', 'done with it');
    expect((await provider.ferry.result('provider', providerPid)).state).toBe('TERMINATED');
    expect((await fetchWith(renewed)).status).toBe(403);
  });

  it('streams an HTTP source through the public endpoint with its credentials, passing ranges on', async () => {
    const { edr } = await startedPull('pull-http', 'ag-api', 'api');
    const whole = await fetchWith(edr);
    expect(whole.status).toBe(200);
    expect(sha(whole.body)).toBe(sha(httpData));
    const part = await fetchWith(edr, { range: 'bytes=5-14' });
    expect(part.status).toBe(206);
    expect(part.body.equals(httpData.subarray(5, 15))).toBe(true);
    // the source's credential never reaches the consumer
    expect(JSON.stringify(edr)).not.toContain(SOURCE_TOKEN);
    await consumer.terminate('consumer', 'pull-http');
  });

  it('an agreement with manual start holds the provider in REQUESTED until its start command', async () => {
    await consumer.startTransfer(pull('held-1', 'ag-held'));
    const providerPid = providerPidFor('consumer', 'held-1');
    await provider.ferry.waitForState('provider', providerPid, ['REQUESTED']);
    await consumer.waitForState('consumer', 'held-1', ['REQUESTED']);
    expect(await consumer.edr('consumer', 'held-1')).toBeNull();
    // a consumer cannot start it, and completing a transfer not started is refused
    await expect(consumer.start('consumer', 'held-1')).rejects.toThrow(/cannot start/);
    await expect(provider.ferry.complete('provider', providerPid)).rejects.toThrow(/cannot complete/);

    // the command answers with the state it led to
    expect(await provider.ferry.start('provider', providerPid)).toBe('STARTING');
    await consumer.waitForState('consumer', 'held-1', ['STARTED']);
    expect(sha((await fetchWith((await consumer.edr('consumer', 'held-1'))!)).body)).toBe(asset.sha256);
    // the provider may end a pull too
    await provider.ferry.complete('provider', providerPid);
    expect((await consumer.result('consumer', 'held-1')).state).toBe('COMPLETED');
    // the provider ends once the consumer took its completion message: after the consumer, maybe
    expect((await provider.ferry.result('provider', providerPid)).state).toBe('COMPLETED');
    expect(statesOf(await provider.ferry.status('provider', providerPid))).toEqual(['INITIAL', 'REQUESTED', 'STARTING', 'STARTUP_REQUESTED', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']);
  });
});

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
