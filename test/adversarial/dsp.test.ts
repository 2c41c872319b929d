import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FerryClient } from '../../src/client.js';
import { ControlPlaneConfigSchema, type ControlPlaneConfig, type DspConfig } from '../../src/config.js';
import { DSP_CONTEXT } from '../../src/dsp.js';
import { transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor } from '../../src/processStart.js';
import { startDspServer, type DspServer } from '../../worker/dspServer.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { makeAsset, makeEndlessAsset } from '../support/transfers.js';

/**
 * Two connectors over DSP on loopback, and an attacker: another configured counterparty of the
 * provider whose DSP address is a prefix of the real consumer's (`…/dsp` vs `…/dsp/b`). Each test
 * is a defect of issue 7 (format/address admission, callback addresses, process ownership, endpoint
 * limits, input bounds, replayed requests) and the variants an attacker tries next.
 */
let cluster: Cluster;
let consumer: FerryClient;
let provider: { ferry: FerryClient; client: Client };
let providerConfig: ControlPlaneConfig & { dsp: DspConfig };
let consumerUrl: string;
let attackerUrl: string;
let providerUrl: string;
let sink: Server;
let sinkUrl: string;
const sinkHits: string[] = [];
const TOKENS = { consumer: 'consumer-presents-this-token', attacker: 'attacker-presents-this-token', provider: 'provider-presents-this-token' };
const servers: DspServer[] = [];

beforeAll(async () => {
  cluster = await startCluster({ namespaces: ['consumer-ns', 'provider-ns'] });
  const [cPort, pPort] = [await freePort(), await freePort()];
  consumerUrl = `http://127.0.0.1:${cPort}/dsp/b`;
  attackerUrl = `http://127.0.0.1:${cPort}/dsp`; // a prefix of the consumer's address
  providerUrl = `http://127.0.0.1:${pPort}/dsp`;
  makeAsset(cluster.root, 'provider/assets/a.bin', 64 * 1024);
  // STARTED while the attacker probes it, then terminated: a finite one (4 s at 8 MiB/s) could complete meanwhile
  makeEndlessAsset(cluster.root, 'provider/assets/slow.bin');
  sink = createServer((req, res) => req.resume().on('end', () => (sinkHits.push(req.url ?? ''), res.writeHead(204).end())));
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/internal/admin`;
  const providerDsp = {
    host: '127.0.0.1',
    port: pPort,
    publicUrl: providerUrl,
    counterparties: [
      { id: 'consumer', address: consumerUrl, inboundToken: TOKENS.consumer, outboundToken: TOKENS.provider },
      { id: 'attacker', address: attackerUrl, inboundToken: TOKENS.attacker, outboundToken: 'provider-to-attacker-token' },
    ],
    requestTimeoutMs: 2000,
    limits: { maxRequests: 100_000 },
  };
  const providerRaw = {
    connectorId: 'provider',
    dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH' as const, 'HttpData-PULL' as const] }],
    assets: {
      a: { endpointType: 'File' as const, endpoint: path.join(cluster.root, 'provider/assets/a.bin') },
      slow: { endpointType: 'File' as const, endpoint: path.join(cluster.root, 'provider/assets/slow.bin') },
    },
    agreements: {
      'ag-b': { assetId: 'a', counterparty: 'consumer' },
      'ag-b2': { assetId: 'a', counterparty: 'consumer' },
      'ag-slow': { assetId: 'slow', counterparty: 'consumer' },
      'ag-held': { assetId: 'a', counterparty: 'consumer', start: 'manual' as const },
      'ag-attacker': { assetId: 'a', counterparty: 'attacker' },
    },
    dsp: providerDsp,
  };
  providerConfig = ControlPlaneConfigSchema.parse({ ...providerRaw, temporal: { ...cluster.temporal, namespace: 'provider-ns' } }) as typeof providerConfig;
  await Promise.all([
    cluster.controlPlane({
      namespace: 'consumer-ns',
      connectorId: 'consumer',
      dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }],
      dsp: {
        host: '127.0.0.1',
        port: cPort,
        publicUrl: consumerUrl,
        counterparties: [{ id: 'provider', address: providerUrl, inboundToken: TOKENS.provider, outboundToken: TOKENS.consumer }],
        requestTimeoutMs: 2000,
      },
    }),
    cluster.dataPlane({ namespace: 'consumer-ns', instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }] }),
    cluster.controlPlane({ namespace: 'provider-ns', ...providerRaw }),
    cluster.dataPlane({ namespace: 'provider-ns', instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [], rateLimitBytesPerSec: 8 * 1024 * 1024 }),
  ]);
  consumer = cluster.clientFor('consumer-ns').ferry;
  provider = cluster.clientFor('provider-ns');
});

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => undefined);
  sink?.close();
  await cluster?.shutdown();
});

async function dsp(method: 'GET' | 'POST', url: string, body?: unknown, token: string | null = TOKENS.consumer, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed, retryAfter: res.headers.get('retry-after') };
}
const at = (base: string, p: string) => `${base}${p}`;
const request = (consumerPid: string, extra: Record<string, unknown> = {}) => ({
  '@context': [DSP_CONTEXT],
  '@type': 'TransferRequestMessage',
  consumerPid,
  agreementId: 'ag-b',
  format: 'File-PUSH',
  callbackAddress: consumerUrl,
  dataAddress: { endpointType: 'File', endpoint: `consumer/${consumerPid}` },
  ...extra,
});
const processMessage = (type: string, consumerPid: string, providerPid: string, extra: Record<string, unknown> = {}) => ({
  '@context': [DSP_CONTEXT],
  '@type': type,
  consumerPid,
  providerPid,
  ...extra,
});
/** Was a provider process created for (counterparty, consumerPid)? Exact (no visibility lag). */
async function providerProcessExists(counterparty: string, consumerPid: string): Promise<boolean> {
  const handle = provider.client.workflow.getHandle(transferProcessWorkflowId('provider', providerPidFor(counterparty, consumerPid)));
  return handle.describe().then(
    () => true,
    () => false,
  );
}

describe('defect 4: a process belongs to the counterparty that created it, not to an address prefix', () => {
  it("a counterparty whose address is a prefix of another's can neither read nor change the other's process", async () => {
    const { processId } = await consumer.startTransfer({
      connectorId: 'consumer',
      processId: 'owned-1',
      counterpartyAddress: providerUrl,
      agreementId: 'ag-slow',
      assetId: 'slow',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
    });
    const providerPid = providerPidFor('consumer', processId);
    await provider.ferry.waitForState('provider', providerPid, ['STARTED']);
    const historyBefore = (await provider.ferry.status('provider', providerPid)).history.length;

    expect((await dsp('GET', at(providerUrl, `/transfers/${providerPid}`), undefined, TOKENS.attacker)).status).toBe(404);
    for (const [kind, type] of [
      ['termination', 'TransferTerminationMessage'],
      ['suspension', 'TransferSuspensionMessage'],
      ['completion', 'TransferCompletionMessage'],
    ] as const) {
      const res = await dsp('POST', at(providerUrl, `/transfers/${providerPid}/${kind}`), processMessage(type, processId, providerPid, { reason: ['mine now'] }), TOKENS.attacker);
      expect(res.status, kind).toBe(404);
    }
    const status = await provider.ferry.status('provider', providerPid);
    expect(status.state).toBe('STARTED');
    expect(status.history.length).toBe(historyBefore);
    // its owner still reads it
    expect((await dsp('GET', at(providerUrl, `/transfers/${providerPid}`))).body).toMatchObject({ providerPid, consumerPid: processId, state: 'STARTED' });

    // the consumer's own endpoint: the attacker is not the provider either
    const consumerSide = await dsp('GET', at(consumerUrl, `/transfers/${processId}`), undefined, TOKENS.attacker);
    expect(consumerSide.status).toBe(404);

    await consumer.terminate('consumer', processId, 'test done');
    expect((await provider.ferry.result('provider', providerPid)).state).toBe('TERMINATED');
    // a repeated termination of a process that ended TERMINATED is done (defect 12), for its owner only
    const again = await dsp('POST', at(providerUrl, `/transfers/${providerPid}/termination`), processMessage('TransferTerminationMessage', processId, providerPid));
    expect(again.status).toBe(200);
    expect((await dsp('POST', at(providerUrl, `/transfers/${providerPid}/termination`), processMessage('TransferTerminationMessage', processId, providerPid), TOKENS.attacker)).status).toBe(404);
    // a completion of a terminated process is still refused
    expect((await dsp('POST', at(providerUrl, `/transfers/${providerPid}/completion`), processMessage('TransferCompletionMessage', processId, providerPid))).status).toBe(400);
  });

  it("the attacker cannot name the other counterparty's endpoint (or anything outside its own) as its callbackAddress", async () => {
    const cases = [
      consumerUrl, // the more specific address of another counterparty
      `${consumerUrl}/transfers`,
      `${attackerUrl}/b`, // the same, spelled from the attacker's base
      `${attackerUrl}/x/../b`,
      `${attackerUrl}/%2e%2e/elsewhere`,
      `${attackerUrl}/..%2fb`,
      `http://attacker@${new URL(attackerUrl).host}/dsp`,
      `${attackerUrl.replace('127.0.0.1', 'localhost')}`,
      `${attackerUrl}?next=${encodeURIComponent(consumerUrl)}`,
      `${attackerUrl}#b`,
      'temporal://provider',
      'file:///etc/passwd',
    ];
    for (const [i, callbackAddress] of cases.entries()) {
      const pid = `cb-${i}`;
      const res = await dsp('POST', at(providerUrl, '/transfers/request'), request(pid, { agreementId: 'ag-attacker', callbackAddress }), TOKENS.attacker);
      expect(res.status, callbackAddress).toBe(400);
      expect(res.body, callbackAddress).toMatchObject({ '@type': 'TransferError', code: expect.stringMatching(/InvalidCallbackAddress|InvalidMessage/) });
      expect(await providerProcessExists('attacker', pid)).toBe(false);
    }
    // its own address (and a path below it that is no one else's) is fine
    const own = await dsp('POST', at(providerUrl, '/transfers/request'), request('cb-own', { agreementId: 'ag-attacker', callbackAddress: `${attackerUrl}/mine/` }), TOKENS.attacker);
    expect(own.status).toBe(201);
    await provider.client.workflow.getHandle(transferProcessWorkflowId('provider', providerPidFor('attacker', 'cb-own'))).terminate('test cleanup');
  });
});

describe('defect 2: format, data address and agreement are admitted before anything starts', () => {
  it.each([
    ['File-PUSH to an HttpData address (the provider would PUT to an internal URL)', () => request('fmt-1', { dataAddress: { endpointType: 'HttpData', endpoint: sinkUrl } }), 'InvalidDataAddress'],
    ['a transfer type the provider does not offer', () => request('fmt-2', { format: 'HttpData-PUSH', dataAddress: { endpointType: 'HttpData', endpoint: sinkUrl } }), 'UnsupportedFormat'],
    ['an unknown format', () => request('fmt-3', { format: 'S3-PUSH' }), 'UnsupportedFormat'],
    ['a pull with a data address', () => request('fmt-4', { format: 'HttpData-PULL', dataAddress: { endpointType: 'File', endpoint: 'x' } }), 'InvalidDataAddress'],
    ['a push without a data address', () => request('fmt-5', { dataAddress: undefined }), 'InvalidDataAddress'],
    ["the provider's asset directory as destination", () => request('fmt-6', { dataAddress: { endpointType: 'File', endpoint: 'assets' } }), 'InvalidDataAddress'],
    ["below the provider's asset directory", () => request('fmt-7', { dataAddress: { endpointType: 'File', endpoint: 'provider/assets/new' } }), 'InvalidDataAddress'],
    ['the asset directory by absolute path', () => request('fmt-8', { dataAddress: { endpointType: 'File', endpoint: path.join(cluster.root, 'provider/assets') } }), 'InvalidDataAddress'],
    ['a destination that climbs out', () => request('fmt-9', { dataAddress: { endpointType: 'File', endpoint: 'consumer/../../etc' } }), 'InvalidDataAddress'],
    ["another counterparty's agreement", () => request('fmt-10', { agreementId: 'ag-attacker' }), 'UnknownAgreement'],
    ['an agreement nobody made', () => request('fmt-11', { agreementId: 'ag-nobody' }), 'UnknownAgreement'],
    ['a prototype property as agreement', () => request('fmt-12', { agreementId: '__proto__' }), 'UnknownAgreement'],
    ['an asset the agreement does not cover', () => request('fmt-13', { assetId: 'slow' }), 'UnknownAgreement'],
  ])('%s: 400, no workflow, nothing sent', async (_what, body, code) => {
    const msg = body();
    const res = await dsp('POST', at(providerUrl, '/transfers/request'), msg);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ '@type': 'TransferError', code, consumerPid: msg.consumerPid });
    expect(JSON.stringify(res.body)).not.toContain(cluster.root); // the refusal names nothing of the provider
    expect(await providerProcessExists('consumer', msg.consumerPid)).toBe(false);
    expect(sinkHits).toEqual([]);
  });
});

describe('defect 12: a re-sent request answers the real state, a changed one is a conflict', () => {
  it('answers the state the process is in (not REQUESTED) and 409 for other parameters', async () => {
    const first = await dsp('POST', at(providerUrl, '/transfers/request'), request('replay-1'));
    expect(first).toMatchObject({ status: 201, body: { state: 'REQUESTED', consumerPid: 'replay-1' } });
    const providerPid = String(first.body?.providerPid);
    // the consumer connector knows no process replay-1: the provider's start is refused and it terminates
    expect((await provider.ferry.result('provider', providerPid)).state).toBe('TERMINATED');

    const again = await dsp('POST', at(providerUrl, '/transfers/request'), request('replay-1', { callbackAddress: `${consumerUrl}/` }));
    expect(again).toMatchObject({ status: 201, body: { providerPid, consumerPid: 'replay-1', state: 'TERMINATED' } });
    for (const changed of [
      { dataAddress: { endpointType: 'File', endpoint: 'consumer/elsewhere' } },
      { callbackAddress: `${consumerUrl}/other` },
      { agreementId: 'ag-b2' },
      { dataAddress: { endpointType: 'File', endpoint: 'consumer/replay-1', endpointProperties: [{ name: 'x', value: 'y' }] } },
    ]) {
      const res = await dsp('POST', at(providerUrl, '/transfers/request'), request('replay-1', changed));
      expect(res.status, JSON.stringify(changed)).toBe(409);
      expect(res.body).toMatchObject({ '@type': 'TransferError', code: 'Conflict', providerPid });
    }
    const runs = await provider.client.workflow.getHandle(transferProcessWorkflowId('provider', providerPid)).describe();
    expect(runs.status.name).not.toBe('RUNNING'); // the workflow ended; its result says TERMINATED
  });

  it('a request held in REQUESTED, replayed, says REQUESTED; two different requests racing for one consumerPid: one 201, one 409', async () => {
    const held = request('held-1', { agreementId: 'ag-held' });
    expect((await dsp('POST', at(providerUrl, '/transfers/request'), held)).status).toBe(201);
    expect((await dsp('POST', at(providerUrl, '/transfers/request'), held)).body).toMatchObject({ state: 'REQUESTED' });
    const race = await Promise.all([
      dsp('POST', at(providerUrl, '/transfers/request'), request('race-1', { agreementId: 'ag-held', dataAddress: { endpointType: 'File', endpoint: 'consumer/one' } })),
      dsp('POST', at(providerUrl, '/transfers/request'), request('race-1', { agreementId: 'ag-held', dataAddress: { endpointType: 'File', endpoint: 'consumer/two' } })),
    ]);
    expect(race.map((r) => r.status).sort()).toEqual([201, 409]);
    for (const pid of ['held-1', 'race-1']) await provider.client.workflow.getHandle(transferProcessWorkflowId('provider', providerPidFor('consumer', pid))).terminate('test cleanup');
  });

  it('a repeated completion of a completed process is answered as done', async () => {
    const { processId } = await consumer.startTransfer({
      connectorId: 'consumer',
      processId: 'completed-1',
      counterpartyAddress: providerUrl,
      agreementId: 'ag-b',
      assetId: 'a',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
    });
    expect((await consumer.result('consumer', processId)).state).toBe('COMPLETED');
    const providerPid = providerPidFor('consumer', processId);
    expect((await provider.ferry.result('provider', providerPid)).state).toBe('COMPLETED');
    const completion = await dsp('POST', at(providerUrl, `/transfers/${providerPid}/completion`), processMessage('TransferCompletionMessage', processId, providerPid));
    expect(completion.status).toBe(200);
    const termination = await dsp('POST', at(providerUrl, `/transfers/${providerPid}/termination`), processMessage('TransferTerminationMessage', processId, providerPid));
    expect(termination.status).toBe(400);
    expect((await provider.ferry.status('provider', providerPid)).state).toBe('COMPLETED');
  });
});

describe('defect 10: every layer accepts what the boundary accepts, and the boundary refuses the rest', () => {
  it('a consumer pid of the longest length ferry accepts completes a transfer over DSP (no 414 on the route)', async () => {
    const processId = `p${'x'.repeat(127)}`;
    await consumer.startTransfer({
      connectorId: 'consumer',
      processId,
      counterpartyAddress: providerUrl,
      agreementId: 'ag-b',
      assetId: 'a',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
    });
    expect(await consumer.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
  });

  it('the longest pid, percent-encoded, reaches the route (404, not 414); longer ones and odd characters are refused as 4xx', async () => {
    const longest = '%/?#'.repeat(64); // 256 characters, 3× as long encoded
    expect((await dsp('GET', at(providerUrl, `/transfers/${encodeURIComponent(longest)}`))).status).toBe(404);
    for (const consumerPid of ['x'.repeat(257), 'a\u0000b', 'a b', 'a\u202Eb', 'a\uD800b', 'а-cyrillic', '']) {
      const res = await dsp('POST', at(providerUrl, '/transfers/request'), request(consumerPid));
      expect(res.status, JSON.stringify(consumerPid)).toBe(400);
    }
  });

  it('a 2 KB callback address, a 10 KB agreement id, 100 reasons: 400 at the boundary, nothing started', async () => {
    const longCallback = `${consumerUrl}/${'c'.repeat(2048)}`;
    expect((await dsp('POST', at(providerUrl, '/transfers/request'), request('long-1', { callbackAddress: longCallback }))).status).toBe(400);
    expect((await dsp('POST', at(providerUrl, '/transfers/request'), request('long-2', { agreementId: 'a'.repeat(10_000) }))).status).toBe(400);
    const many = await dsp('POST', at(providerUrl, `/transfers/${providerPidFor('consumer', 'owned-1')}/termination`), processMessage('TransferTerminationMessage', 'owned-1', providerPidFor('consumer', 'owned-1'), { reason: Array(100).fill('r') }));
    expect(many.status).toBe(400);
    for (const pid of ['long-1', 'long-2']) expect(await providerProcessExists('consumer', pid)).toBe(false);
  });

  it('a client refuses a 2 KB counterparty address before anything starts', async () => {
    await expect(
      consumer.startTransfer({
        connectorId: 'consumer',
        processId: 'long-address',
        counterpartyAddress: `${providerUrl}/${'x'.repeat(2048)}`,
        agreementId: 'ag-b',
        assetId: 'a',
        transferType: 'File-PUSH',
        dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
      }),
    ).rejects.toThrow(/invalid transfer request[\s\S]*more than 1024/);
  });
});

describe('defect 9: limits of the DSP endpoint', () => {
  /** Another DSP server of the provider connector (same Temporal namespace), with its own limits. */
  async function serverWith(limits: Partial<DspConfig['limits']>, extra: Partial<ControlPlaneConfig> = {}): Promise<{ server: DspServer; url: string }> {
    const config = { ...providerConfig, ...extra, dsp: { ...providerConfig.dsp, port: 0, publicUrl: undefined, limits: { ...providerConfig.dsp.limits, ...limits } } } as typeof providerConfig;
    const server = await startDspServer({ config, client: provider.client });
    servers.push(server);
    return { server, url: server.url };
  }

  it('authenticates before reading a body: an unauthenticated oversized body is 404, an authenticated one 413', async () => {
    const { url } = await serverWith({ bodyBytes: 4096 });
    const big = JSON.stringify(request('big', { padding: 'x'.repeat(2 * 1024 * 1024) }));
    expect((await dsp('POST', `${url}/transfers/request`, big, null)).status).toBe(404);
    expect((await dsp('POST', `${url}/transfers/request`, big, 'not-a-token-anyone-has')).status).toBe(404);
    expect((await dsp('POST', `${url}/transfers/request`, JSON.stringify(request('mid', { padding: 'x'.repeat(8 * 1024) })))).status).toBe(413);
    expect(await providerProcessExists('consumer', 'mid')).toBe(false);
  });

  it('rate: a burst larger than the limit gets exactly the excess as 429 with Retry-After; other counterparties are not affected', async () => {
    const { url } = await serverWith({ maxRequests: 20, window: '1h' });
    const results = [];
    for (let i = 0; i < 35; i++) results.push(await dsp('GET', `${url}/transfers/p-none-${i}`));
    expect(results.filter((r) => r.status === 404)).toHaveLength(20);
    const limited = results.filter((r) => r.status === 429);
    expect(limited).toHaveLength(15);
    for (const r of limited) {
      expect(Number(r.retryAfter)).toBeGreaterThan(0);
      expect(r.body).toMatchObject({ '@type': 'TransferError', code: 'TooManyRequests' });
    }
    expect((await dsp('GET', `${url}/transfers/p-none`, undefined, TOKENS.attacker)).status).toBe(404);
  });

  it('concurrency: requests in progress beyond the limit get 429 with Retry-After, per counterparty', async () => {
    const { server, url } = await serverWith({ concurrency: 2 });
    // two requests that stay in progress: headers sent, body still coming
    const { port } = new URL(url);
    const slow: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const socket = connect(Number(port), '127.0.0.1');
      await new Promise<void>((r) => socket.once('connect', () => r()));
      socket.write(`POST /transfers/request HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKENS.consumer}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
      socket.on('error', () => undefined);
      slow.push(socket);
    }
    await expect.poll(() => server.inFlight('consumer'), { timeout: 30_000 }).toBe(2);
    const refused = await dsp('GET', `${url}/transfers/p-none`);
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    expect((await dsp('GET', `${url}/transfers/p-none`, undefined, TOKENS.attacker)).status).toBe(404);
    for (const s of slow) s.destroy();
    await expect.poll(() => server.inFlight('consumer'), { timeout: 30_000 }).toBe(0);
    expect((await dsp('GET', `${url}/transfers/p-none`)).status).toBe(404);
  });

  it('a request Temporal cannot answer in time is 503 with Retry-After, not a hung connection', async () => {
    // a connector whose control-plane worker is gone: queries of its processes wait for a worker
    const { connectorId: _, dsp: __, temporal: ___, ...rest } = providerConfig;
    const ghost = await cluster.controlPlane({ ...rest, namespace: 'provider-ns', connectorId: 'ghost' });
    const live = await serverWith({}, { connectorId: 'ghost' });
    // held in REQUESTED (manual start): no activity in flight when its worker stops
    expect((await dsp('POST', `${live.url}/transfers/request`, request('ghost-1', { agreementId: 'ag-held' }))).status).toBe(201);
    const providerPid = providerPidFor('consumer', 'ghost-1');
    await provider.ferry.waitForState('ghost', providerPid, ['REQUESTED']);
    await ghost.shutdown();
    const { url } = await serverWith({ requestTimeout: '1s' }, { connectorId: 'ghost' });
    const res = await dsp('GET', `${url}/transfers/${providerPid}`);
    expect(res.status).toBe(503);
    expect(Number(res.retryAfter)).toBeGreaterThan(0);
    await provider.client.workflow.getHandle(transferProcessWorkflowId('ghost', providerPid)).terminate('test cleanup');
  });
});
