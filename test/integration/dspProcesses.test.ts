import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryClient } from '../../src/client.js';
import { providerPidFor } from '../../src/processStart.js';
import { SecretBox } from '../../src/secrets.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { children, killAll, spawnWorker } from '../support/processes.js';
import { makeAsset, sha256File, statesOf } from '../support/transfers.js';

/**
 * Two connectors as two deployments: each runs its control plane and its data plane as separate
 * OS processes, in its own namespace, with its own key and its own DSP endpoint. They share only
 * HTTP (and, here, the machine's disk for File push).
 */
let cluster: Cluster;
let consumer: FerryClient;
let provider: FerryClient;
let asset: { file: string; sha256: string };
let providerUrl: string;

beforeAll(async () => {
  cluster = await startCluster({ namespaces: ['org-a', 'org-b'] });
  const [cPort, pPort] = [await freePort(), await freePort()];
  const consumerUrl = `http://127.0.0.1:${cPort}`;
  providerUrl = `http://127.0.0.1:${pPort}/api/dsp`;
  const keys = { consumer: SecretBox.generateKeyBase64(), provider: SecretBox.generateKeyBase64() };
  const tokens = { c2p: 'consumer-to-provider-token', p2c: 'provider-to-consumer-token' };
  asset = makeAsset(cluster.root, 'provider/big.bin', 40 * 1024 * 1024);
  const temporal = (namespace: string) => ({ address: cluster.temporal.address, namespace });
  const write = (name: string, config: unknown) => {
    const file = path.join(cluster.root, `${name}.json`);
    writeFileSync(file, JSON.stringify(config));
    return file;
  };
  const files = {
    consumerCp: write('consumer-cp', {
      connectorId: 'consumer',
      temporal: temporal('org-a'),
      dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }],
      secretKey: keys.consumer,
      dsp: { port: cPort, publicUrl: consumerUrl, counterparties: [{ id: 'provider', address: providerUrl, inboundToken: tokens.p2c, outboundToken: tokens.c2p }] },
    }),
    consumerDp: write('consumer-dp', { instanceId: 'consumer-dp', temporal: temporal('org-a'), fileRoot: cluster.root, secretKey: keys.consumer, provisioners: [{ kind: 'file-destination' }] }),
    providerCp: write('provider-cp', {
      connectorId: 'provider',
      temporal: temporal('org-b'),
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }],
      assets: { big: { endpointType: 'File', endpoint: asset.file } },
      secretKey: keys.provider,
      dsp: {
        port: pPort,
        publicUrl: providerUrl,
        counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: tokens.c2p, outboundToken: tokens.p2c }],
        agreements: { 'agreement-big': { assetId: 'big', counterparty: 'consumer' } },
      },
    }),
    providerDp: write('provider-dp', { instanceId: 'provider-dp', temporal: temporal('org-b'), fileRoot: cluster.root, secretKey: keys.provider, provisioners: [], rateLimitBytesPerSec: 8 * 1024 * 1024 }),
  };
  await Promise.all([
    spawnWorker('controlPlaneWorker', files.consumerCp),
    spawnWorker('dataPlaneWorker', files.consumerDp),
    spawnWorker('controlPlaneWorker', files.providerCp),
    spawnWorker('dataPlaneWorker', files.providerDp),
  ]);
  // the consumer's own key seals what its users send
  consumer = new FerryClient(cluster.clientFor('org-a').client, SecretBox.fromBase64(keys.consumer));
  provider = cluster.clientFor('org-b').ferry;
});

afterAll(async () => {
  const exits = [...children].map((c) => once(c, 'exit'));
  killAll();
  await Promise.all(exits);
  await cluster?.shutdown();
});

describe('two deployments over DSP', () => {
  it('suspend from the provider, resume from the consumer, and the transfer completes, sha256 equal', async () => {
    const { processId } = await consumer.startTransfer({
      connectorId: 'consumer',
      processId: 'two-orgs-1',
      counterpartyAddress: providerUrl,
      agreementId: 'agreement-big',
      assetId: 'big',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
    });
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
});
