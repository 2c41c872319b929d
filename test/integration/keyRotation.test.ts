import path from 'node:path';
import { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryClient } from '../../src/client.js';
import { EncryptionCodec, ferryDataConverter, METADATA_KEY_ID } from '../../src/codec.js';
import { dataFlowWorkflowId, inClusterAddress, transferProcessWorkflowId } from '../../src/ids.js';
import { Keyring } from '../../src/keys.js';
import type { RunningControlPlane } from '../../worker/controlPlaneWorker.js';
import type { RunningDataPlane } from '../../worker/dataPlaneWorker.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { makeAsset, sha256File } from '../support/transfers.js';

/**
 * Keys rotate without stopping transfers: a transfer starts while every worker holds codec key A and
 * callback key CA, and waits for a provisioning service. Every worker is stopped and started again
 * with [B, A] and [CB, CA]. The service then calls back on the URL signed with CA, and the transfer
 * completes: its history holds payloads under A (before) and under B (after), read by a client of
 * [B, A].
 */
let cluster: Cluster;
let svc: ProvisioningService;
let asset: { file: string; sha256: string };
/** The callback endpoint keeps its address across the restart, as a deployed one does. */
let callbackPort: number;
const A = () => cluster.codecKeys;
const B = Keyring.generate('codec-b');
const CA = Keyring.generate('callback-a');
const CB = Keyring.generate('callback-b');
const EA = Keyring.generate('edr-a');
const EB = Keyring.generate('edr-b');
let publicPort: number;

beforeAll(async () => {
  cluster = await startCluster();
  svc = await startProvisioningService({ mode: 'async', autoRelease: false, fileRoot: cluster.root });
  asset = makeAsset(cluster.root, 'assets/a.bin', 256 * 1024);
  callbackPort = await freePort();
  publicPort = await freePort();
});

afterAll(async () => {
  await svc?.close();
  await cluster?.shutdown();
});

async function startWorkers(codec: Keyring, callback: Keyring, edr: Keyring = EA): Promise<(RunningControlPlane | RunningDataPlane)[]> {
  return Promise.all([
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
      assets: { a: { endpointType: 'File', endpoint: asset.file } },
      agreements: { 'agreement-1': { assetId: 'a', counterparty: 'consumer' } },
      keys: { codec },
    }),
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [], publicApi: { host: '127.0.0.1', port: publicPort }, keys: { codec, edr } }),
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH', 'HttpData-PULL'] }], keys: { codec } }),
    cluster.dataPlane({
      instanceId: 'consumer-dp',
      fileRoot: cluster.root,
      provisioners: [{ kind: 'http', name: 'staging', url: svc.url, side: 'destination', endpointTypes: ['File'] }],
      callback: { host: '127.0.0.1', port: callbackPort },
      keys: { codec, callback },
    }),
  ]);
}

/** The key ids of every encrypted payload of a workflow's history, as the server stores it. */
async function keyIdsOf(workflowId: string): Promise<Set<string>> {
  const { history } = await cluster.client.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId } });
  const ids = new Set<string>();
  const walk = (v: unknown): void => {
    if (!v || typeof v !== 'object' || v instanceof Uint8Array) return;
    const meta = (v as { metadata?: Record<string, Uint8Array> }).metadata;
    if (meta?.[METADATA_KEY_ID]) ids.add(Buffer.from(meta[METADATA_KEY_ID]).toString());
    Object.values(v).forEach(walk);
  };
  walk(history);
  return ids;
}

let running: (RunningControlPlane | RunningDataPlane)[] = [];
const jwtKid = (authorization: string) => (JSON.parse(Buffer.from(authorization.replace(/^Bearer /, '').split('.')[0]!, 'base64url').toString()) as { kid?: string }).kid;

describe('key rotation', () => {
  it('a transfer started under codec key A and callback key CA completes after every worker restarts with [B, A] and [CB, CA]', async () => {
    const before = await startWorkers(A(), CA);
    const { processId } = await cluster.ferry.startTransfer({
      connectorId: 'consumer',
      processId: 'rotate-1',
      counterpartyAddress: inClusterAddress('provider'),
      agreementId: 'agreement-1',
      assetId: 'a',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'inbox/rotate-1' },
    });
    // the consumer's provisioning is pending: its callback URL is signed with CA
    const [request] = await svc.waitForRequests(1);
    const callbackUrl = new URL(String(request!.body.callbackUrl));
    expect(callbackUrl.searchParams.get('kid')).toBe('callback-a');
    await cluster.ferry.waitForState('consumer', processId, ['PREPARATION_REQUESTED']);
    svc.setMode('sync'); // deprovisioning at the end answers at once

    for (const w of before) await w.shutdown();
    const codecBA = A().rotatedTo(B.primary);
    running = await startWorkers(codecBA, CA.rotatedTo(CB.primary));

    // the URL handed out under CA is still good after the rotation
    const [callback] = await svc.releasePending();
    expect(callback!.status).toBe(202);

    const ferryBA = new FerryClient(new Client({ connection: cluster.env.connection, dataConverter: ferryDataConverter(codecBA) }));
    expect(await ferryBA.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    const status = await ferryBA.status('consumer', processId);
    // the service's directory is not marked as a flow's: the push made its own (the provider's flow id) in it
    expect(await sha256File(path.join(status.dataDestination!.endpoint, status.counterpartyPid!, 'a.bin'))).toBe(asset.sha256);

    // written under A before the restart, under B after it
    for (const id of [transferProcessWorkflowId('consumer', processId), dataFlowWorkflowId('consumer', processId)]) {
      expect(await keyIdsOf(id), id).toEqual(new Set([A().primary.id, 'codec-b']));
    }
    // B alone does not read what A wrote (so A stays in the ring while such histories matter), and names the key it lacks
    const { history } = await cluster.client.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId: transferProcessWorkflowId('consumer', processId) } });
    const startInput = history!.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads!;
    await expect(new EncryptionCodec(B).decode(startInput)).rejects.toThrow(`key "${A().primary.id}", which is not in this keyring (codec-b)`);
    // live state is answered under the new key: a client holding only B reads it
    const bOnly = new FerryClient(new Client({ connection: cluster.env.connection, dataConverter: ferryDataConverter(B) }));
    await expect(bOnly.status('consumer', processId)).resolves.toMatchObject({ state: 'COMPLETED' });
  });

  it('a pull whose EDR was signed with EA still fetches after the provider’s data plane restarts with [EB, EA]; new EDRs are signed with EB', async () => {
    const codecBA = A().rotatedTo(B.primary);
    const ferryBA = new FerryClient(new Client({ connection: cluster.env.connection, dataConverter: ferryDataConverter(codecBA) }));
    const request = (processId: string) => ({
      connectorId: 'consumer',
      processId,
      counterpartyAddress: inClusterAddress('provider'),
      agreementId: 'agreement-1',
      assetId: 'a',
      transferType: 'HttpData-PULL' as const,
    });
    const edrOf = async (processId: string) => {
      await ferryBA.waitForState('consumer', processId, ['STARTED']);
      const edr = (await ferryBA.edr('consumer', processId))!;
      return { url: edr.endpoint, authorization: edr.endpointProperties.find((p) => p.name === 'authorization')!.value };
    };
    const fetchWith = (edr: { url: string; authorization: string }) => fetch(edr.url, { headers: { authorization: edr.authorization } });

    await ferryBA.startTransfer(request('pull-rotate'));
    const old = await edrOf('pull-rotate');
    cluster.registerSecret(old.authorization.replace(/^Bearer /, ''), 'EDR token signed with EA');
    expect(jwtKid(old.authorization)).toBe('edr-a');
    expect((await fetchWith(old)).status).toBe(200);

    for (const w of running) await w.shutdown();
    running = await startWorkers(codecBA, CA.rotatedTo(CB.primary), EA.rotatedTo(EB.primary));

    const after = await fetchWith(old);
    expect(after.status).toBe(200);
    expect(Buffer.from(await after.arrayBuffer()).length).toBe(256 * 1024);
    await ferryBA.startTransfer(request('pull-rotate-2'));
    const fresh = await edrOf('pull-rotate-2');
    cluster.registerSecret(fresh.authorization.replace(/^Bearer /, ''), 'EDR token signed with EB');
    expect(jwtKid(fresh.authorization)).toBe('edr-b');
    expect((await fetchWith(fresh)).status).toBe(200);
    for (const pid of ['pull-rotate', 'pull-rotate-2']) {
      await ferryBA.complete('consumer', pid);
      expect(await ferryBA.result('consumer', pid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
      // the provider releases (revokes the EDR) after it took the consumer's completion, so it may end after the consumer
      const providerPid = (await ferryBA.status('consumer', pid)).counterpartyPid!;
      expect(await ferryBA.result('provider', providerPid)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    }
    // released: the old token is refused now, not because of its key
    expect((await fetchWith(old)).status).toBe(403);
  });
});
