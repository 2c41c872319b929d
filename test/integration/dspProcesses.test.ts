import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryClient } from '../../src/client.js';
import { property, type DataAddress } from '../../src/DataAddress.js';
import { providerPidFor } from '../../src/processStart.js';
import { ferryDataConverter } from '../../src/codec.js';
import { Keyring } from '../../src/keys.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { listenLoopback, until } from '../support/loopback.js';
import { children, killAll, spawnWorker } from '../support/processes.js';
import { makeAsset, sha256File, statesOf } from '../support/transfers.js';

/**
 * Two connectors as two deployments: each runs its control plane and its data plane as separate
 * OS processes, in its own namespace, with its own key and its own DSP endpoint. They share only
 * HTTP (and, here, the machine's disk for File push). The matrix: push and pull, finite and
 * non-finite, suspend/resume and terminate from either side, with provisioning services that
 * answer "pending" and call back later on both sides.
 */
let cluster: Cluster;
let consumer: FerryClient;
let provider: FerryClient;
let asset: { file: string; sha256: string };
let providerUrl: string;
let services: ProvisioningService[] = [];
let stream: Server;
let sink: Server;
let streamUrl: string;
let sinkUrl: string;
/** What the consumer's HTTP endpoint received, per request; `ended` once the pusher finished or hung up. */
const received: { auth?: string; bytes: number; ended: boolean }[] = [];

/** An HTTP source that never ends: 64 KiB chunks for as long as the reader reads. */
const startStream = () =>
  createServer((req, res) => {
    // the provider's source provisioner rewrote the credential: only the rewritten one opens it
    if (!/^Bearer fixture-p-/.test(req.headers.authorization ?? '')) return void res.writeHead(401).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
    };
    res.on('drain', pump);
    pump();
  });

beforeAll(async () => {
  cluster = await startCluster({ namespaces: ['org-a', 'org-b'] });
  const [cPort, pPort] = [await freePort(), await freePort()];
  const consumerUrl = `http://127.0.0.1:${cPort}`;
  providerUrl = `http://127.0.0.1:${pPort}/api/dsp`;
  // each organisation its own codec keys; each data plane its own EDR and callback keys
  const keys = { consumer: Keyring.generate('org-a'), provider: Keyring.generate('org-b') };
  const envOf = (codec: Keyring, instanceId?: string) => ({
    ...cluster.workerEnv(instanceId),
    FERRY_CODEC_KEYS: codec.serialize(),
  });
  const tokens = { c2p: 'consumer-to-provider-token', p2c: 'provider-to-consumer-token' };
  // what the processes hold: no history and no worker output may show any of it (cluster.shutdown scans both)
  cluster.registerSecret(keys.consumer, 'codec keys of org-a');
  cluster.registerSecret(keys.provider, 'codec keys of org-b');
  cluster.registerSecret(tokens.c2p, 'DSP token consumer→provider');
  cluster.registerSecret(tokens.p2c, 'DSP token provider→consumer');
  asset = makeAsset(cluster.root, 'provider/big.bin', 40 * 1024 * 1024);

  // provisioning services of each organisation: 202 now, the callback a moment later
  const consumerSvc = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  const providerSvc = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  services = [consumerSvc, providerSvc];
  stream = startStream();
  sink = createServer(async (req, res) => {
    const entry = { ...(req.headers.authorization ? { auth: req.headers.authorization } : {}), bytes: 0, ended: false };
    received.push(entry);
    req.on('data', (d: Buffer) => (entry.bytes += d.length));
    req.on('end', () => res.writeHead(204).end());
    // a push that is cancelled (suspend, terminate) hangs up mid-body
    req.on('close', () => (entry.ended = true));
  });
  streamUrl = `${await listenLoopback(stream)}/live`;
  sinkUrl = `${await listenLoopback(sink)}/in`;

  const temporal = (namespace: string) => ({ address: cluster.temporal.address, namespace });
  const write = (name: string, config: unknown) => {
    const file = path.join(cluster.root, `${name}.json`);
    writeFileSync(file, JSON.stringify(config));
    return file;
  };
  const types = ['File-PUSH', 'HttpData-PUSH', 'HttpData-PULL'];
  const files = {
    consumerCp: write('consumer-cp', {
      connectorId: 'consumer',
      temporal: temporal('org-a'),
      dataPlanes: [{ id: 'consumer-dp', transferTypes: types }],
      dsp: { port: cPort, publicUrl: consumerUrl, counterparties: [{ id: 'provider', address: providerUrl, inboundToken: tokens.p2c, outboundToken: tokens.c2p }] },
    }),
    consumerDp: write('consumer-dp', {
      instanceId: 'consumer-dp',
      temporal: temporal('org-a'),
      fileRoot: cluster.root,
      provisioners: [{ kind: 'file-destination' }, { kind: 'http', name: 'endpoints', url: consumerSvc.url, side: 'destination', endpointTypes: ['HttpData'] }],
    }),
    providerCp: write('provider-cp', {
      connectorId: 'provider',
      temporal: temporal('org-b'),
      dataPlanes: [{ id: 'provider-dp', transferTypes: types }],
      assets: {
        big: { endpointType: 'File', endpoint: asset.file },
        live: { endpointType: 'HttpData', endpoint: streamUrl },
      },
      dsp: {
        port: pPort,
        publicUrl: providerUrl,
        counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: tokens.c2p, outboundToken: tokens.p2c }],
        agreements: { 'agreement-big': { assetId: 'big', counterparty: 'consumer' }, 'agreement-live': { assetId: 'live', counterparty: 'consumer' } },
      },
    }),
    providerDp: write('provider-dp', {
      instanceId: 'provider-dp',
      temporal: temporal('org-b'),
      fileRoot: cluster.root,
      provisioners: [{ kind: 'http', name: 'sources', url: providerSvc.url, side: 'source', endpointTypes: ['HttpData'] }],
      publicApi: { host: '127.0.0.1', port: 0 },
      // 20 s for the 40 MiB push the first test suspends in flight (at 8 MiB/s its 5 s were a margin a
      // loaded machine could use up before the suspend landed, and the suspend was refused)
      rateLimitBytesPerSec: 2 * 1024 * 1024,
      // the source stream and the consumer's sink are on loopback
      allowedNetworks: ['127.0.0.0/8'],
    }),
  };
  await Promise.all([
    spawnWorker('controlPlaneWorker', files.consumerCp, { env: envOf(keys.consumer) }),
    spawnWorker('dataPlaneWorker', files.consumerDp, { env: envOf(keys.consumer, 'consumer-dp') }),
    spawnWorker('controlPlaneWorker', files.providerCp, { env: envOf(keys.provider) }),
    spawnWorker('dataPlaneWorker', files.providerDp, { env: envOf(keys.provider, 'provider-dp') }),
  ]);
  // each organisation's clients use its own codec keys
  consumer = new FerryClient(new Client({ connection: cluster.env.connection, namespace: 'org-a', dataConverter: ferryDataConverter(keys.consumer) }));
  provider = new FerryClient(new Client({ connection: cluster.env.connection, namespace: 'org-b', dataConverter: ferryDataConverter(keys.provider) }));
});

afterAll(async () => {
  const exits = [...children].map((c) => once(c, 'exit'));
  killAll();
  await Promise.all(exits);
  for (const s of services) await s.close().catch(() => undefined);
  stream?.closeAllConnections();
  stream?.close();
  sink?.closeAllConnections();
  sink?.close();
  await cluster?.shutdown();
});

const request = (processId: string, assetId: 'big' | 'live', transferType: 'File-PUSH' | 'HttpData-PUSH' | 'HttpData-PULL', dataDestination?: DataAddress) => ({
  connectorId: 'consumer',
  processId,
  counterpartyAddress: providerUrl,
  agreementId: `agreement-${assetId}`,
  assetId,
  transferType,
  ...(dataDestination ? { dataDestination } : {}),
});

/** An EDR's tokens are credentials too: the scan at shutdown looks for every one a test used. */
function registerTokens(edr: DataAddress): void {
  for (const name of ['authorization', 'refreshToken']) {
    const token = property(edr, name);
    if (token) cluster.registerSecret(token.replace(/^Bearer /, ''), `EDR ${name}`);
  }
}

async function fetchWith(edr: DataAddress, headers: Record<string, string> = {}) {
  registerTokens(edr);
  const res = await fetch(edr.endpoint, { headers: { authorization: property(edr, 'authorization')!, ...headers } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}
/** A live stream never ends: its status and first bytes, then hang up. Ended bodies (an error) are read whole. */
async function peek(edr: DataAddress): Promise<{ status: number; bytes: number }> {
  registerTokens(edr);
  const res = await fetch(edr.endpoint, { headers: { authorization: property(edr, 'authorization')! } });
  const reader = res.body!.getReader();
  const first = await reader.read();
  await reader.cancel();
  return { status: res.status, bytes: first.value?.length ?? 0 };
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('two deployments over DSP: push', () => {
  it('finite File push: suspend from the provider, resume from the consumer, completes, sha256 equal', async () => {
    const { processId } = await consumer.startTransfer(request('two-orgs-1', 'big', 'File-PUSH', { endpointType: 'File', endpoint: 'consumer/inbox', endpointProperties: [] }));
    const providerPid = providerPidFor('consumer', processId);
    await provider.waitForState('provider', providerPid, ['STARTED']);
    await consumer.waitForState('consumer', processId, ['STARTED']);

    await provider.suspend('provider', providerPid, 'provider maintenance');
    await provider.waitForState('provider', providerPid, ['SUSPENDED']);
    const suspended = await consumer.waitForState('consumer', processId, ['SUSPENDED']);
    expect(suspended.history.at(-1)?.note).toContain('provider maintenance');

    await consumer.resume('consumer', processId);
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect((await provider.result('provider', providerPid)).state).toBe('COMPLETED');
    expect(statesOf(await provider.status('provider', providerPid))).toEqual(
      expect.arrayContaining(['SUSPENDING', 'SUSPENDED', 'STARTING', 'STARTED', 'COMPLETING', 'COMPLETED']),
    );
    const status = await consumer.status('consumer', processId);
    expect(await sha256File(path.join(status.dataDestination!.endpoint, 'big.bin'))).toBe(asset.sha256);
  });

  it('non-finite HttpData push, provisioned pending on both sides: suspend from the consumer, resume from the provider, terminate from the provider', async () => {
    const { processId } = await consumer.startTransfer(request('live-push', 'live', 'HttpData-PUSH', { endpointType: 'HttpData', endpoint: sinkUrl, endpointProperties: [] }));
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    // both sides waited for their provisioning service's callback
    expect(statesOf(await consumer.status('consumer', processId))).toContain('PREPARATION_REQUESTED');
    expect(statesOf(await provider.status('provider', providerPid))).toContain('STARTUP_REQUESTED');
    // bytes arrive, under the credential the consumer's provisioning service issued
    const first = await until('bytes at the sink', () => received.find((r) => r.bytes > 1024 * 1024));
    expect(first.auth).toBe(`Bearer fixture-${processId}`);

    await consumer.suspend('consumer', processId, 'consumer pauses');
    await provider.waitForState('provider', providerPid, ['SUSPENDED']);
    await until('the push to stop', () => received.every((r) => r.ended) || undefined);
    const before = received.length;

    await provider.resume('provider', providerPid);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    await until('a new push', () => received.length > before || undefined);

    await provider.terminate('provider', providerPid, 'stream retired');
    expect(await provider.result('provider', providerPid)).toEqual({ state: 'TERMINATED', reason: 'stream retired' });
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'TERMINATED', reason: 'terminated by counterparty: stream retired' });
    await until('the push to stop', () => received.every((r) => r.ended) || undefined);
  });
});

describe('two deployments over DSP: pull', () => {
  it('finite File pull: the consumer fetches all of it with the EDR and completes; the token is revoked', async () => {
    const { processId } = await consumer.startTransfer(request('pull-file', 'big', 'HttpData-PULL'));
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    const edr = (await consumer.edr('consumer', processId))!;
    const got = await fetchWith(edr);
    expect(got.status).toBe(200);
    expect(sha(got.body)).toBe(asset.sha256);

    await consumer.complete('consumer', processId);
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect(await provider.result('provider', providerPid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect((await fetchWith(edr)).status).toBe(403);
  });

  it('non-finite HTTP pull, source provisioned pending: suspend and resume from the consumer (a new EDR), terminate from the consumer', async () => {
    const { processId } = await consumer.startTransfer(request('pull-live', 'live', 'HttpData-PULL'));
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    const edr = (await consumer.edr('consumer', processId))!;
    expect(await peek(edr)).toEqual({ status: 200, bytes: expect.any(Number) });
    expect((await peek(edr)).bytes).toBeGreaterThan(0);

    await consumer.suspend('consumer', processId, 'enough for now');
    await provider.waitForState('provider', providerPid, ['SUSPENDED']);
    expect((await fetchWith(edr)).status).toBe(403);

    await consumer.resume('consumer', processId);
    await provider.waitForState('provider', providerPid, ['STARTED']);
    const renewed = await until('a new EDR', async () => {
      const e = await consumer.edr('consumer', processId);
      return e && property(e, 'authorization') !== property(edr, 'authorization') ? e : undefined;
    });
    // a subscriber stays connected to the live stream ...
    const live = await fetch(renewed.endpoint, { headers: { authorization: property(renewed, 'authorization')! } });
    expect(live.status).toBe(200);
    const reader = live.body!.getReader();
    expect((await reader.read()).value?.length).toBeGreaterThan(0);

    await consumer.terminate('consumer', processId, 'unsubscribed');
    expect(await provider.result('provider', providerPid)).toEqual({ state: 'TERMINATED', reason: 'terminated by counterparty: unsubscribed' });
    // ... until the release revokes its token: then the provider hangs up on it. The provider's end implies the
    // release, which destroys the stream, so no timer decides: a stream never cut fails by the test's timeout
    try {
      while (!(await reader.read()).done);
    } catch {
      // cut off mid-chunk: hung up as well
    }
    expect((await consumer.result('consumer', processId)).state).toBe('TERMINATED');
    expect((await fetchWith(renewed)).status).toBe(403);
  });

  it('non-finite pull ended by the provider: suspend, resume and complete from the provider', async () => {
    const { processId } = await consumer.startTransfer(request('pull-provider-ends', 'live', 'HttpData-PULL'));
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    await provider.waitForState('provider', providerPid, ['STARTED']);
    await provider.suspend('provider', providerPid, 'provider maintenance');
    await consumer.waitForState('consumer', processId, ['SUSPENDED']);
    await provider.resume('provider', providerPid);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    expect((await peek((await consumer.edr('consumer', processId))!)).status).toBe(200);
    await provider.waitForState('provider', providerPid, ['STARTED']);
    await provider.complete('provider', providerPid);
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect((await provider.result('provider', providerPid)).state).toBe('COMPLETED');
  });
});
