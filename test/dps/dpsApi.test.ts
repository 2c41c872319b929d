import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import path from 'node:path';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey as JoseKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataFlowWorkflowId } from '../../src/ids.js';
import { DPS_HTTP_PULL, DPS_HTTP_PUSH } from '../../src/dps.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { listenLoopback, until } from '../support/loopback.js';
import { makeAsset, processStatus, statesOf } from '../support/transfers.js';

/**
 * The DPS HTTP APIs as an attacker and a sloppy peer would use them, on a real data-plane worker and
 * a real control-plane worker (in-process) against a real Temporal dev server: unknown or forged
 * callers are refused and nothing changes, flows of one control plane are invisible to another,
 * DPS's 4xx rules hold, async calls (and only those) are called back, callbacks reach the
 * TransferProcess only from its own data plane, and `errored` changes no state.
 */
let cluster: Cluster;
let service: ProvisioningService;
let dpsUrl: string;
let cpDpsUrl: string;
let recorder: Server;
/** A live source that has nothing to send yet: it never answers. */
let silent: Server;
let silentRequests = 0;
let recorderUrl: string;
const calls: { method: string; path: string; auth?: string; body: Record<string, unknown> }[] = [];
/** How the recorder, as a DPS data plane of the control plane under test, answers prepare. */
let prepareAnswer = { status: 202, body: { state: 'PREPARING' } as Record<string, unknown> };
const TOKEN_A = 'control-plane-a-token-0123456789';
const ADMIN = 'admin-token-0123456789abcdef';
let keyB: { privateKey: JoseKey; publicKey: JoseKey };
let keyOther: { privateKey: JoseKey; publicKey: JoseKey };
const CP_DP_TOKEN = 'dp-x-callback-token-0123456789';

beforeAll(async () => {
  cluster = await startCluster();
  service = await startProvisioningService({ mode: 'async', fileRoot: cluster.root, autoRelease: false });
  makeAsset(cluster.root, 'assets/a.bin', 1024);
  [keyB, keyOther] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256')]);
  recorder = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      calls.push({ method: req.method!, path: req.url!, ...(req.headers.authorization ? { auth: req.headers.authorization } : {}), body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
      if (req.url === '/dataflows/prepare') return void res.writeHead(prepareAnswer.status, { 'content-type': 'application/json' }).end(JSON.stringify(prepareAnswer.body));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  recorderUrl = await listenLoopback(recorder);
  silent = createServer(() => void silentRequests++);
  const silentUrl = `${await listenLoopback(silent)}/feed`;
  const dp = await cluster.dataPlane({
    instanceId: 'dps-dp',
    fileRoot: cluster.root,
    provisioners: [
      { kind: 'file-destination' },
      { kind: 'http', name: 'pending', url: service.url, side: 'destination', endpointTypes: ['File'], endpointPrefix: 'pending/' },
    ],
    publicApi: { host: '127.0.0.1', port: 0 },
    // the silent source and the recorder's sink are on loopback: allowed explicitly (the default network policy refuses it)
    allowedNetworks: ['127.0.0.0/8'],
    // a suspend waits for the transfer to stop: no deadline answers in its place, and no heartbeat timeout ends a silent transfer
    dataFlow: { stopTimeout: '1h', transferHeartbeatTimeout: '1h' },
    dps: {
      adminToken: ADMIN,
      controlPlanes: [
        { id: 'cp-a', endpoint: `${recorderUrl}/cp-a`, inboundToken: TOKEN_A },
        { id: 'cp-b', endpoint: `${recorderUrl}/cp-b`, jwks: { keys: [{ ...(await exportJWK(keyB.publicKey)), kid: 'b-1' }] } },
      ],
      datasets: {
        file: { source: { endpointType: 'File', endpoint: path.join(cluster.root, 'assets/a.bin'), endpointProperties: [] } },
        inbox: { destination: { endpointType: 'File', endpoint: 'inbox', endpointProperties: [] } },
        silent: { source: { endpointType: 'HttpData', endpoint: silentUrl, endpointProperties: [] } },
        pending: { destination: { endpointType: 'File', endpoint: 'pending/inbox', endpointProperties: [] } },
      },
      stateDir: path.join(cluster.root, 'dps-state'),
    },
  });
  dpsUrl = dp.dpsUrl!;
  const cp = await cluster.controlPlane({
    connectorId: 'cp-x',
    dataPlanes: [{ id: 'dp-x', transferTypes: ['File-PUSH'], dps: { url: recorderUrl, inboundToken: CP_DP_TOKEN } }, { id: 'dp-y', transferTypes: ['File-PUSH'], dps: { url: recorderUrl, inboundToken: 'dp-y-callback-token-0123456789' } }],
    dpsSignaling: { adminToken: ADMIN },
  });
  cpDpsUrl = cp.dpsUrl!;
});

afterAll(async () => {
  silent?.closeAllConnections();
  silent?.close();
  recorder?.closeAllConnections();
  recorder?.close();
  await service?.close();
  await cluster?.shutdown();
});

const post = (url: string, body: unknown, auth?: string) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify(body) });
const asA = `Bearer ${TOKEN_A}`;
const start = (processId: string, extra: Record<string, unknown> = {}) => ({
  messageId: `m-${processId}`,
  participantId: 'provider',
  counterPartyId: 'consumer',
  dataspaceContext: 'test',
  processId,
  agreementId: 'agreement',
  datasetId: 'file',
  profile: 'File-PUSH',
  claims: {},
  dataAddress: { endpointType: 'File', endpoint: 'dest', endpointProperties: [] },
  ...extra,
});
const flowExists = async (cp: string, processId: string) =>
  cluster.client.workflow
    .getHandle(dataFlowWorkflowId(cp, processId))
    .describe()
    .then(
      () => true,
      () => false,
    );
const jwt = (key: JoseKey, claims: { sub?: string; aud?: string; exp?: number; jti?: string; kid?: string }) => {
  const now = Math.floor(Date.now() / 1000);
  const b = new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: claims.kid ?? 'b-1' }).setIssuer(claims.sub ?? 'cp-b').setSubject(claims.sub ?? 'cp-b').setAudience(claims.aud ?? 'dps-dp').setIssuedAt(now).setExpirationTime(claims.exp ?? now + 60);
  if (claims.jti) b.setJti(claims.jti);
  return b.sign(key);
};

describe('the data plane API refuses unknown callers and changes nothing', () => {
  it('no credentials, a wrong token, forged or misaddressed or expired JWTs: 401, no flow', async () => {
    const now = Math.floor(Date.now() / 1000);
    const attempts = [
      undefined,
      'Bearer not-the-token-0123456789',
      `Bearer ${TOKEN_A}x`,
      TOKEN_A.slice(0, -1),
      `Bearer ${await jwt(keyOther.privateKey, {})}`, // not cp-b's key
      `Bearer ${await jwt(keyB.privateKey, { aud: 'another-data-plane' })}`,
      `Bearer ${await jwt(keyB.privateKey, { sub: 'cp-a' })}`, // cp-a has no keys: a token only
      `Bearer ${await jwt(keyB.privateKey, { exp: now - 60 })}`,
    ];
    for (const [i, auth] of attempts.entries()) {
      const res = await post(`${dpsUrl}/dataflows/start`, start(`intruder-${i}`), auth);
      expect(res.status, `attempt ${i}`).toBe(401);
      for (const cp of ['cp-a', 'cp-b']) expect(await flowExists(cp, `intruder-${i}`)).toBe(false);
    }
  });

  it('a self-signed JWT of a configured control plane works once: a replay is refused', async () => {
    const token = `Bearer ${await jwt(keyB.privateKey, { jti: 'once-only' })}`;
    const first = await post(`${dpsUrl}/dataflows/start`, start('jwt-1'), token);
    expect(first.status, await first.clone().text()).toBe(200);
    expect((await post(`${dpsUrl}/dataflows/start`, start('jwt-2'), token)).status).toBe(401);
    expect(await flowExists('cp-b', 'jwt-2')).toBe(false);
  });

  it('random bodies never get past validation, never 5xx, never create a flow', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('prepare', 'start'), fc.jsonValue(), async (op, body) => {
        const res = await post(`${dpsUrl}/dataflows/${op}`, body, asA);
        expect(res.status).toBe(400);
      }),
      { numRuns: 60 },
    );
  });
});

describe('DPS rules', () => {
  it('a second start for a process is 409, and the first flow goes on; the same start message again (its sender retrying) is answered like the first', async () => {
    const first = await post(`${dpsUrl}/dataflows/start`, start('dup'), asA);
    expect(first.status, await first.clone().text()).toBe(200);
    const again = await post(`${dpsUrl}/dataflows/start`, start('dup', { messageId: 'another-message' }), asA);
    expect(again.status).toBe(409);
    const status = await (await fetch(`${dpsUrl}/dataflows/dup/status`, { headers: { authorization: asA } })).json();
    expect(status).toMatchObject({ dataFlowId: 'dup' });
    expect(['STARTED', 'COMPLETED']).toContain((status as { state: string }).state);
    // a pull's retried start hands out the EDR again
    const pull = start('dup-pull', { profile: DPS_HTTP_PULL, dataAddress: undefined });
    const issued = await post(`${dpsUrl}/dataflows/start`, pull, asA);
    expect(issued.status).toBe(200);
    const retried = await post(`${dpsUrl}/dataflows/start`, pull, asA);
    expect(retried.status).toBe(200);
    const edr = ((await retried.json()) as { dataAddress?: { endpointType: string } }).dataAddress;
    expect(edr?.endpointType).toBe(DPS_HTTP_PULL);
    expect((await post(`${dpsUrl}/dataflows/start`, { ...pull, messageId: 'a-second-start' }, asA)).status).toBe(409);
  });

  it('a pull started with a data address, an unknown dataset or profile: 400, no flow', async () => {
    const cases = [
      start('pull-addr', { profile: DPS_HTTP_PULL }),
      start('no-dataset', { datasetId: 'nope' }),
      start('proto-dataset', { datasetId: 'toString' }),
      start('bad-profile', { profile: 'https://w3id.org/dspace-sig/profile/s3-push' }),
      start('push-no-dest', { dataAddress: undefined }),
    ];
    for (const c of cases) {
      expect((await post(`${dpsUrl}/dataflows/start`, c, asA)).status, c.processId).toBe(400);
      expect(await flowExists('cp-a', c.processId)).toBe(false);
    }
  });

  it("one control plane cannot see or drive another's flows", async () => {
    expect((await post(`${dpsUrl}/dataflows/start`, start('mine'), asA)).status).toBe(200);
    const asB = async () => `Bearer ${await jwt(keyB.privateKey, { jti: crypto.randomUUID() })}`;
    expect((await fetch(`${dpsUrl}/dataflows/mine/status`, { headers: { authorization: await asB() } })).status).toBe(404);
    expect((await post(`${dpsUrl}/dataflows/mine/terminate`, { messageId: 'x' }, await asB())).status).toBe(404);
    expect((await fetch(`${dpsUrl}/dataflows/mine/status`, { headers: { authorization: asA } })).status).toBe(200);
  });

  it('a consumer pull takes an http-pull address only with the Token Renewal properties; messageId may be missing', async () => {
    const prepare = { participantId: 'c', counterPartyId: 'p', dataspaceContext: 'x', processId: 'cpull', agreementId: 'a', datasetId: 'none', profile: DPS_HTTP_PULL, claims: {} };
    const prepared = await post(`${dpsUrl}/dataflows/prepare`, prepare, asA);
    expect(prepared.status).toBe(200);
    expect(await prepared.json()).toMatchObject({ dataFlowId: 'cpull', state: 'PREPARED' });
    const address = { endpointType: DPS_HTTP_PULL, endpoint: 'https://p.example/data', endpointProperties: [{ name: 'authorization', value: 't' }, { name: 'authType', value: 'bearer' }] };
    expect((await post(`${dpsUrl}/dataflows/cpull/started`, { dataAddress: address }, asA)).status).toBe(400);
    expect(((await (await fetch(`${dpsUrl}/dataflows/cpull/status`, { headers: { authorization: asA } })).json()) as { state: string }).state).toBe('PREPARED');
    const renewable = { ...address, endpointProperties: [...address.endpointProperties, { name: 'refreshToken', value: 'r' }, { name: 'expiresIn', value: '300' }, { name: 'refreshEndpoint', value: 'https://p.example/refresh' }] };
    const started = await post(`${dpsUrl}/dataflows/cpull/started`, { dataAddress: renewable }, asA);
    expect(started.status).toBe(200);
    expect(await started.json()).toMatchObject({ state: 'STARTED' });
  });

  it('a prepare that waits for an external provisioner answers 202 + Location and calls back; one that does not answers 200 and does not', async () => {
    const prepare = (processId: string, datasetId: string) => ({ participantId: 'c', counterPartyId: 'p', dataspaceContext: 'x', processId, agreementId: 'a', datasetId, profile: 'File-PUSH', claims: {} });
    const sync = await post(`${dpsUrl}/dataflows/prepare`, prepare('sync-prep', 'inbox'), asA);
    expect(sync.status).toBe(200);
    expect(await sync.json()).toMatchObject({ state: 'PREPARED', dataAddress: { endpointType: 'File', endpoint: path.join(cluster.root, 'inbox', 'sync-prep') } });

    const async = await post(`${dpsUrl}/dataflows/prepare`, prepare('async-prep', 'pending'), asA);
    expect(async.status).toBe(202);
    expect(async.headers.get('location')).toBe('/dataflows/async-prep/status');
    expect(await async.json()).toMatchObject({ dataFlowId: 'async-prep', state: 'PREPARING' });
    // the provisioning service has the request (it answered 202, the flow waits); now it calls back
    await until('the provisioning request held', async () => ((await service.releasePending()).length ? true : undefined));
    const callback = await until('the prepared callback', () => calls.find((c) => c.path === '/cp-a/transfers/async-prep/dataflow/prepared'));
    expect(callback.body).toMatchObject({ dataFlowId: 'async-prep', state: 'PREPARED', dataAddress: { endpointType: 'File' } });
    // the sync one owes no callback: once its workflow is at rest (no workflow task, no activity
    // in flight; a callback would be a local activity inside a workflow task), nothing was sent for it
    await until('sync-prep at rest', async () => {
      const handle = cluster.client.workflow.getHandle(dataFlowWorkflowId('cp-a', 'sync-prep'));
      const events = (await handle.fetchHistory()).events ?? [];
      const last = events.at(-1);
      const busy = !!(last?.workflowTaskScheduledEventAttributes || last?.workflowTaskStartedEventAttributes);
      return !busy && ((await handle.describe()).raw.pendingActivities ?? []).length === 0 ? true : undefined;
    });
    expect(calls.some((c) => c.path.includes('/transfers/sync-prep/'))).toBe(false);
  });
});

describe('suspend and terminate', () => {
  it('reach a push whose live source has sent nothing yet: suspend answers SUSPENDED once the transfer stopped', async () => {
    const body = start('silent-push', { datasetId: 'silent', profile: DPS_HTTP_PUSH, dataAddress: { endpointType: DPS_HTTP_PUSH, endpoint: `${recorderUrl}/sink`, endpointProperties: [] } });
    expect((await post(`${dpsUrl}/dataflows/start`, body, asA)).status).toBe(200);
    // the transfer runs: it waits for the source's first byte
    await until('the transfer to ask its source', () => (silentRequests > 0 ? true : undefined));
    const suspended = await post(`${dpsUrl}/dataflows/silent-push/suspend`, { messageId: 's', reason: 'pause' }, asA);
    expect(suspended.status).toBe(200);
    expect(await suspended.json()).toMatchObject({ dataFlowId: 'silent-push', state: 'SUSPENDED' });
    const terminated = await post(`${dpsUrl}/dataflows/silent-push/terminate`, { reason: 'done' }, asA);
    expect(terminated.status).toBe(200);
    expect(await terminated.json()).toMatchObject({ state: 'TERMINATED' });
  });
});

describe('registration', () => {
  it('PUT /controlplanes needs the admin token; a registered control plane is known until deleted', async () => {
    const keyC = await generateKeyPair('ES256');
    const reg = { controlplaneId: 'cp-c', endpoint: `${recorderUrl}/cp-c`, authorization: { type: 'oauth2_client_credentials', jwks: { keys: [{ ...(await exportJWK(keyC.publicKey)), kid: 'c' }] } } };
    const put = (auth?: string) => fetch(`${dpsUrl}/controlplanes`, { method: 'PUT', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify(reg) });
    expect((await put()).status).toBe(404);
    expect((await put(`Bearer ${TOKEN_A}`)).status).toBe(404);
    expect((await put(`Bearer ${ADMIN}`)).status).toBe(200);
    expect((await put(`Bearer ${ADMIN}`)).status).toBe(200); // idempotent
    const asC = async () => `Bearer ${await jwt(keyC.privateKey, { sub: 'cp-c', kid: 'c', jti: crypto.randomUUID() })}`;
    expect((await post(`${dpsUrl}/dataflows/start`, start('by-c'), await asC())).status).toBe(200);
    expect((await fetch(`${dpsUrl}/controlplanes/cp-c`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(204);
    expect((await post(`${dpsUrl}/dataflows/start`, start('by-c-2'), await asC())).status).toBe(401);
    expect((await fetch(`${dpsUrl}/controlplanes/cp-c`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(404);
  });
});

describe('the control plane callback API', () => {
  it('only the data plane of a process calls back for it; errored changes no state; prepared moves it on', async () => {
    prepareAnswer = { status: 202, body: { state: 'PREPARING' } };
    const { processId } = await cluster.ferry.startTransfer({
      connectorId: 'cp-x',
      counterpartyAddress: 'https://nowhere.invalid/dsp',
      agreementId: 'a',
      assetId: 'x',
      transferType: 'File-PUSH',
      dataPlaneId: 'dp-x',
      dataDestination: { endpointType: 'File', endpoint: 'inbox' },
    });
    await cluster.ferry.waitForState('cp-x', processId, ['PREPARATION_REQUESTED']);
    const prepareCall = calls.find((c) => c.path === '/dataflows/prepare' && c.body.processId === processId)!;
    expect(prepareCall.body).toMatchObject({ processId, agreementId: 'a', datasetId: 'x', profile: 'File-PUSH', participantId: 'cp-x' });
    const url = (kind: string) => `${cpDpsUrl}/transfers/${processId}/dataflow/${kind}`;
    const body = { dataFlowId: processId, state: 'PREPARED', dataAddress: { endpointType: 'File', endpoint: 'inbox/x' } };
    expect((await post(url('prepared'), body)).status).toBe(401);
    expect((await post(url('prepared'), body, 'Bearer dp-y-callback-token-0123456789')).status).toBe(404); // another data plane
    expect((await post(url('prepared'), { state: 'NOT-A-STATE' }, `Bearer ${CP_DP_TOKEN}`)).status).toBe(400);
    expect((await post(url('errored'), { state: 'PREPARING', error: 'disk on fire' }, `Bearer ${CP_DP_TOKEN}`)).status).toBe(200);
    expect((await processStatus(cluster.client, 'cp-x', processId)).state).toBe('PREPARATION_REQUESTED');
    expect((await post(`${cpDpsUrl}/transfers/unknown-process/dataflow/prepared`, body, `Bearer ${CP_DP_TOKEN}`)).status).toBe(404);

    expect((await post(url('prepared'), body, `Bearer ${CP_DP_TOKEN}`)).status).toBe(200);
    // on past the wait (towards a counterparty that does not exist); then a terminate reaches the data plane over DPS
    // on past the wait: the request to the counterparty fails (this control plane has no transport to it), which terminates the process
    expect((await cluster.ferry.result('cp-x', processId)).state).toBe('TERMINATED');
    expect((await processStatus(cluster.client, 'cp-x', processId)).dataDestination?.endpoint).toBe('inbox/x');
    expect(statesOf(await processStatus(cluster.client, 'cp-x', processId))).toEqual(expect.arrayContaining(['PREPARATION_REQUESTED', 'REQUESTING']));
    expect(calls.some((c) => c.path === `/dataflows/${processId}/terminate`)).toBe(true);
  });

  it('PUT /dataplanes needs the admin token and maps profiles to transfer types', async () => {
    const put = (body: unknown, auth?: string) => fetch(`${cpDpsUrl}/dataplanes`, { method: 'PUT', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify(body) });
    const reg = { dataplaneId: 'dp-z', endpoint: recorderUrl, profiles: [DPS_HTTP_PUSH] };
    expect((await put(reg)).status).toBe(404);
    expect((await put({ ...reg, profiles: ['https://w3id.org/dspace-sig/profile/s3-push'] }, `Bearer ${ADMIN}`)).status).toBe(400);
    expect((await put(reg, `Bearer ${ADMIN}`)).status).toBe(200);
    expect((await put(reg, `Bearer ${ADMIN}`)).status).toBe(200);
    expect((await fetch(`${cpDpsUrl}/dataplanes/dp-z`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(204);
  });
});

