import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryClient } from '../../src/client.js';
import { property, type DataAddress } from '../../src/DataAddress.js';
import { dataFlowWorkflowId, transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor } from '../../src/processStart.js';
import type { TransferProcessState } from '../../src/TransferProcessState.js';
import { Client } from '@temporalio/client';
import { ferryDataConverter } from '../../src/codec.js';
import { Keyring } from '../../src/keys.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { listenLoopback, until } from '../support/loopback.js';
import { children, killAll, spawnWorker } from '../support/processes.js';
import { makeAsset, sha256File, statesOf } from '../support/transfers.js';

/**
 * ferry's control planes driving ferry's data planes over Data Plane Signaling (HTTP), every part
 * its own OS process: two connectors (consumer, provider) talking DSP over HTTP, each control plane
 * reaching its data plane only through the DPS API, and the data plane calling back through the
 * control plane's DPS endpoint. The consumer's pair authenticates with static bearer tokens, the
 * provider's with self-signed JWTs (`oauth2_client_credentials`, keys configured as JWKS). The
 * matrix of the in-cluster path: the seed table's rows (async and sync on both sides), push and
 * pull, finite and non-finite, suspend/resume/terminate from either side.
 */
let cluster: Cluster;
let consumer: FerryClient;
let provider: FerryClient;
let asset: { file: string; sha256: string };
let providerUrl: string;
let dpClients: Record<string, Client>;
let services: ProvisioningService[] = [];
let stream: Server;
let sink: Server;
let streamUrl: string;
let sinkUrl: string;
const ranWorkflows: { ns: string; id: string }[] = [];
/** How long a state may take to come on a loaded machine (four worker processes and a dev server on two cores). */
const WAIT = 180_000;
const received: { bytes: number; ended: boolean }[] = [];

beforeAll(async () => {
  // each data plane in a namespace of its own: its control plane can reach it only over DPS HTTP
  cluster = await startCluster({ namespaces: ['org-a', 'org-b', 'dp-a', 'dp-b'] });
  const [cPort, pPort, cSig, pSig, cDps, pDps] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  const consumerUrl = `http://127.0.0.1:${cPort}`;
  providerUrl = `http://127.0.0.1:${pPort}/api/dsp`;
  // each organisation its own codec keys; each data plane its own EDR and callback keys
  const keys = { consumer: Keyring.generate('org-a'), provider: Keyring.generate('org-b') };
  const envOf = (codec: Keyring, instanceId?: string, signingKey?: object) => ({
    ...cluster.workerEnv(instanceId),
    FERRY_CODEC_KEYS: codec.serialize(),
    ...(signingKey ? { FERRY_DPS_SIGNING_KEY: JSON.stringify(signingKey) } : {}),
  });
  const dsp = { c2p: 'consumer-to-provider-token', p2c: 'provider-to-consumer-token' };
  // the consumer's control plane and data plane: static tokens each way
  const dps = { cpToDp: 'consumer-cp-to-dp-token-0123456789', dpToCp: 'consumer-dp-to-cp-token-0123456789' };
  // the provider's: self-signed JWTs, each side knowing the other's public key
  const [cpKey, dpKey] = await Promise.all([generateKeyPair('ES256', { extractable: true }), generateKeyPair('ES256', { extractable: true })]);
  const jwk = async (k: CryptoKey, kid: string) => ({ ...(await exportJWK(k)), kid, alg: 'ES256' });
  const cpPrivate = await jwk(cpKey.privateKey, 'cp-1');
  const dpPrivate = await jwk(dpKey.privateKey, 'dp-1');
  // what the processes hold: no history and no worker output may show any of it (cluster.shutdown scans both)
  cluster.registerSecret(keys.consumer, 'codec keys of org-a');
  cluster.registerSecret(keys.provider, 'codec keys of org-b');
  for (const [label, value] of Object.entries({ ...dsp, ...dps, cpPrivateKey: String(cpPrivate.d), dpPrivateKey: String(dpPrivate.d) })) cluster.registerSecret(value, label);
  asset = makeAsset(cluster.root, 'provider/big.bin', 40 * 1024 * 1024);

  const consumerSvc = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  const providerSvc = await startProvisioningService({ mode: 'async', fileRoot: cluster.root });
  services = [consumerSvc, providerSvc];
  stream = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
    };
    res.on('drain', pump);
    pump();
  });
  sink = createServer((req, res) => {
    const entry = { bytes: 0, ended: false };
    received.push(entry);
    req.on('data', (d: Buffer) => (entry.bytes += d.length));
    req.on('end', () => res.writeHead(204).end());
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
      dataPlanes: [{ id: 'consumer-dp', transferTypes: types, dps: { url: `http://127.0.0.1:${cDps}/dps`, outboundToken: dps.cpToDp, inboundToken: dps.dpToCp } }],
      dpsSignaling: { port: cSig, publicUrl: `http://127.0.0.1:${cSig}/signaling` },
      dsp: { port: cPort, publicUrl: consumerUrl, counterparties: [{ id: 'provider', address: providerUrl, inboundToken: dsp.p2c, outboundToken: dsp.c2p }] },
    }),
    consumerDp: write('consumer-dp', {
      instanceId: 'consumer-dp',
      temporal: temporal('dp-a'),
      fileRoot: cluster.root,
      provisioners: [{ kind: 'file-destination' }, { kind: 'http', name: 'endpoints', url: consumerSvc.url, side: 'destination', endpointTypes: ['HttpData'] }],
      dps: {
        // provisioning that needs nobody else is answered 200 even on a loaded machine (within the caller's 30 s)
        syncWaitMs: 25_000,
        port: cDps,
        publicUrl: `http://127.0.0.1:${cDps}/dps`,
        controlPlanes: [{ id: 'consumer', endpoint: `http://127.0.0.1:${cSig}/signaling`, inboundToken: dps.cpToDp, outboundToken: dps.dpToCp }],
      },
    }),
    providerCp: write('provider-cp', {
      connectorId: 'provider',
      temporal: temporal('org-b'),
      dataPlanes: [{ id: 'provider-dp', transferTypes: types, dps: { url: `http://127.0.0.1:${pDps}`, jwks: { keys: [{ ...(await jwk(dpKey.publicKey, 'dp-1')) }] } } }],
      dpsSignaling: { port: pSig },
      assets: {
        big: { endpointType: 'File', endpoint: asset.file },
        live: { endpointType: 'HttpData', endpoint: streamUrl },
      },
      dsp: {
        port: pPort,
        publicUrl: providerUrl,
        counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: dsp.c2p, outboundToken: dsp.p2c }],
        agreements: { 'agreement-big': { assetId: 'big', counterparty: 'consumer' }, 'agreement-live': { assetId: 'live', counterparty: 'consumer' } },
      },
    }),
    providerDp: write('provider-dp', {
      instanceId: 'provider-dp',
      temporal: temporal('dp-b'),
      fileRoot: cluster.root,
      provisioners: [{ kind: 'http', name: 'sources', url: providerSvc.url, side: 'source', endpointTypes: ['HttpData'] }],
      publicApi: { host: '127.0.0.1', port: 0 },
      // the live source and the consumer's sink are on loopback: allowed explicitly (the default network policy refuses it)
      allowedNetworks: ['127.0.0.0/8'],
      rateLimitBytesPerSec: 8 * 1024 * 1024,
      dps: {
        syncWaitMs: 25_000,
        port: pDps,
        controlPlanes: [{ id: 'provider', endpoint: `http://127.0.0.1:${pSig}`, jwks: { keys: [await jwk(cpKey.publicKey, 'cp-1')] } }],
      },
    }),
  };
  await Promise.all([
    spawnWorker('controlPlaneWorker', files.consumerCp, { env: envOf(keys.consumer) }),
    spawnWorker('dataPlaneWorker', files.consumerDp, { env: envOf(keys.consumer, 'consumer-dp') }),
    spawnWorker('controlPlaneWorker', files.providerCp, { env: envOf(keys.provider, undefined, cpPrivate) }),
    spawnWorker('dataPlaneWorker', files.providerDp, { env: envOf(keys.provider, 'provider-dp', dpPrivate) }),
  ]);
  // each organisation's clients use its own codec keys
  const client = (namespace: string, codec: Keyring) => new Client({ connection: cluster.env.connection, namespace, dataConverter: ferryDataConverter(codec) });
  consumer = new FerryClient(client('org-a', keys.consumer));
  provider = new FerryClient(client('org-b', keys.provider));
  dpClients = { 'dp-a': client('dp-a', keys.consumer), 'dp-b': client('dp-b', keys.provider), 'org-a': client('org-a', keys.consumer) };
});

afterAll(async () => {
  const exits = [...children].map((c) => once(c, 'exit'));
  killAll();
  await Promise.all(exits);
  for (const s of services) await s.close().catch(() => undefined);
  for (const s of [stream, sink]) {
    s?.closeAllConnections();
    s?.close();
  }
  await cluster?.shutdown();
});

const request = (processId: string, assetId: 'big' | 'live', transferType: 'File-PUSH' | 'HttpData-PUSH' | 'HttpData-PULL', dataDestination?: DataAddress) => {
  const providerPid = providerPidFor('consumer', processId);
  ranWorkflows.push(
    { ns: 'org-a', id: transferProcessWorkflowId('consumer', processId) },
    { ns: 'dp-a', id: dataFlowWorkflowId('consumer', processId) },
    { ns: 'org-b', id: transferProcessWorkflowId('provider', providerPid) },
    { ns: 'dp-b', id: dataFlowWorkflowId('provider', providerPid) },
  );
  return { connectorId: 'consumer', processId, counterpartyAddress: providerUrl, agreementId: `agreement-${assetId}`, assetId, transferType, ...(dataDestination ? { dataDestination } : {}) };
};

async function fetchWith(edr: DataAddress) {
  const res = await fetch(edr.endpoint, { headers: { authorization: property(edr, 'authorization')! } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

describe('ferry control planes drive ferry data planes over DPS: push', { timeout: 600_000 }, () => {
  it('seed rows, sync on both sides (200s): a File push completes through DPS, sha256 equal, the end reported by a `completed` callback', async () => {
    const { processId } = await consumer.startTransfer(request('dps-file', 'big', 'File-PUSH', { endpointType: 'File', endpoint: 'consumer/inbox', endpointProperties: [] }));
    const providerPid = providerPidFor('consumer', processId);
    // STARTED lasts only as long as the push (5 s): a loaded machine may poll past it, so any state from it on
    const startedOrLater: TransferProcessState[] = ['STARTED', 'COMPLETING', 'COMPLETED'];
    await provider.waitForState('provider', providerPid, startedOrLater, WAIT);
    await consumer.waitForState('consumer', processId, startedOrLater, WAIT);
    // the flows exist only in the data planes' namespaces, created by their DPS APIs
    const flow = await dpClients['dp-a']!.workflow.getHandle(dataFlowWorkflowId('consumer', processId)).describe();
    expect(flow.memo?.dps).toMatchObject({ controlPlaneId: 'consumer', role: 'CONSUMER', transferType: 'File-PUSH' });
    await expect(dpClients['org-a']!.workflow.getHandle(dataFlowWorkflowId('consumer', processId)).describe()).rejects.toThrow();
    // the data planes answered prepare and start at once (their provisioners need nobody else)
    expect(statesOf(await consumer.status('consumer', processId)).slice(0, 3)).toEqual(['INITIAL', 'REQUESTING', 'REQUESTED']);
    expect(statesOf(await provider.status('provider', providerPid)).slice(0, 3)).toEqual(['INITIAL', 'STARTING', 'STARTED']);
    // the provider's data plane reports the end of the bytes with a DPS `completed` callback
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect((await provider.result('provider', providerPid)).state).toBe('COMPLETED');
    const status = await consumer.status('consumer', processId);
    expect(status.dataDestination?.endpoint).toBe(path.join(cluster.root, 'consumer/inbox', processId));
    expect(await sha256File(path.join(status.dataDestination!.endpoint, 'big.bin'))).toBe(asset.sha256);
  });

  it('seed rows, async on both sides (202 + callbacks): live HttpData push suspended by the consumer, resumed by the provider, terminated by the provider', async () => {
    const { processId } = await consumer.startTransfer(request('dps-live-push', 'live', 'HttpData-PUSH', { endpointType: 'HttpData', endpoint: sinkUrl, endpointProperties: [] }));
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED'], WAIT);
    expect(statesOf(await consumer.status('consumer', processId)).slice(0, 3)).toEqual(['INITIAL', 'PREPARATION_REQUESTED', 'REQUESTING']);
    expect(statesOf(await provider.status('provider', providerPid)).slice(0, 3)).toEqual(['INITIAL', 'STARTUP_REQUESTED', 'STARTING']);
    await until('bytes at the sink', () => received.find((r) => r.bytes > 1024 * 1024));

    await consumer.suspend('consumer', processId, 'consumer pauses');
    await provider.waitForState('provider', providerPid, ['SUSPENDED'], WAIT);
    await until('the push to stop', () => received.every((r) => r.ended) || undefined);
    const before = received.length;
    await provider.resume('provider', providerPid);
    await consumer.waitForState('consumer', processId, ['STARTED'], WAIT);
    await until('a new push', () => received.length > before || undefined);
    // the provider is STARTED once the consumer took its start message, which may be after the consumer is
    await provider.waitForState('provider', providerPid, ['STARTED'], WAIT);

    // and the other way round: the provider suspends, the consumer resumes
    await provider.suspend('provider', providerPid, 'provider maintenance');
    await consumer.waitForState('consumer', processId, ['SUSPENDED'], WAIT);
    await until('the push to stop', () => received.every((r) => r.ended) || undefined);
    const again = received.length;
    await consumer.resume('consumer', processId);
    await provider.waitForState('provider', providerPid, ['STARTED'], WAIT);
    await until('a new push', () => received.length > again || undefined);

    await provider.terminate('provider', providerPid, 'stream retired');
    expect(await provider.result('provider', providerPid)).toEqual({ state: 'TERMINATED', reason: 'stream retired' });
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'TERMINATED', reason: 'terminated by counterparty: stream retired' });
    await until('the push to stop', () => received.every((r) => r.ended) || undefined);
  });
});

describe('ferry control planes drive ferry data planes over DPS: pull', { timeout: 600_000 }, () => {
  it('finite pull: the EDR comes back in the DPS start answer, the consumer fetches it all and completes; the token is revoked', async () => {
    const { processId } = await consumer.startTransfer(request('dps-pull', 'big', 'HttpData-PULL'));
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED'], WAIT);
    const edr = (await consumer.edr('consumer', processId))!;
    const got = await fetchWith(edr);
    expect(got.status).toBe(200);
    expect(createHash('sha256').update(got.body).digest('hex')).toBe(asset.sha256);
    await consumer.complete('consumer', processId);
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect(await provider.result('provider', providerPid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect((await fetchWith(edr)).status).toBe(403);
  });

  it('live pull, source provisioned pending: suspend and resume from the consumer (a new EDR through DPS resume), terminate from the provider', async () => {
    const { processId } = await consumer.startTransfer(request('dps-pull-live', 'live', 'HttpData-PULL'));
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED'], WAIT);
    expect(statesOf(await provider.status('provider', providerPid))).toContain('STARTUP_REQUESTED');
    const edr = (await consumer.edr('consumer', processId))!;
    await consumer.suspend('consumer', processId, 'enough for now');
    await provider.waitForState('provider', providerPid, ['SUSPENDED'], WAIT);
    await until('the EDR to be revoked', async () => (await fetchWith(edr)).status === 403 || undefined);
    await consumer.resume('consumer', processId);
    await provider.waitForState('provider', providerPid, ['STARTED'], WAIT);
    const renewed = await until('a new EDR', async () => {
      const e = await consumer.edr('consumer', processId);
      return e && property(e, 'authorization') !== property(edr, 'authorization') ? e : undefined;
    });
    const live = await fetch(renewed.endpoint, { headers: { authorization: property(renewed, 'authorization')! } });
    expect(live.status).toBe(200);
    await live.body!.cancel();
    await provider.terminate('provider', providerPid, 'feed closed');
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'TERMINATED', reason: 'terminated by counterparty: feed closed' });
    expect((await provider.result('provider', providerPid)).state).toBe('TERMINATED');
  });
});

describe('secrets', () => {
  it('no DPS credential (tokens, private keys) appears in any history or worker output (and every flow ran on its data plane)', async () => {
    expect(ranWorkflows.length).toBeGreaterThanOrEqual(16);
    for (const w of ranWorkflows.filter((r) => r.ns.startsWith('dp-'))) await dpClients[w.ns]!.workflow.getHandle(w.id).describe();
    await cluster.assertNoSecrets();
  });
});
