import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FerryClient } from '../../src/client.js';
import { providerPidFor } from '../../src/processStart.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { makeEndlessAsset, statesOf } from '../support/transfers.js';

/**
 * A message the counterparty took whose answer never came back: two connectors over DSP on loopback,
 * the consumer reaching the provider through a proxy that delivers every TransferSuspensionMessage and
 * then drops the connection instead of passing the answer on.
 */
let cluster: Cluster;
let consumer: FerryClient;
let provider: FerryClient;
let proxy: Server;
let proxyUrl: string;
const TOKENS = { consumerToProvider: 'consumer-presents-this-token', providerToConsumer: 'provider-presents-this-token' };

beforeAll(async () => {
  cluster = await startCluster({ namespaces: ['la-consumer', 'la-provider'] });
  const [cPort, pPort, proxyPort] = [await freePort(), await freePort(), await freePort()];
  const consumerUrl = `http://127.0.0.1:${cPort}/dsp`;
  const providerUrl = `http://127.0.0.1:${pPort}/dsp`;
  proxyUrl = `http://127.0.0.1:${proxyPort}/dsp`;
  proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length') as [string, string][]);
      fetch(`http://127.0.0.1:${pPort}${req.url}`, { method: req.method!, headers, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) })
        .then(async (up) => {
          const body = Buffer.from(await up.arrayBuffer());
          // delivered, and the answer lost on its way back
          if (req.url?.endsWith('/suspension')) return void req.socket.destroy();
          res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' }).end(body);
        })
        .catch(() => req.socket.destroy());
    });
  });
  await new Promise<void>((r) => proxy.listen(proxyPort, '127.0.0.1', r));
  makeEndlessAsset(cluster.root, 'la/assets/endless.bin');
  await Promise.all([
    cluster.controlPlane({
      namespace: 'la-consumer',
      connectorId: 'consumer',
      dataPlanes: [{ id: 'la-consumer-dp', transferTypes: ['File-PUSH'] }],
      dsp: {
        host: '127.0.0.1',
        port: cPort,
        publicUrl: consumerUrl,
        counterparties: [{ id: 'provider', address: proxyUrl, inboundToken: TOKENS.providerToConsumer, outboundToken: TOKENS.consumerToProvider }],
        agreements: {},
      },
    }),
    cluster.dataPlane({ namespace: 'la-consumer', instanceId: 'la-consumer-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }] }),
    cluster.controlPlane({
      namespace: 'la-provider',
      connectorId: 'provider',
      dataPlanes: [{ id: 'la-provider-dp', transferTypes: ['File-PUSH'] }],
      assets: { endless: { endpointType: 'File', endpoint: path.join(cluster.root, 'la/assets/endless.bin'), endpointProperties: [] } },
      dsp: {
        host: '127.0.0.1',
        port: pPort,
        publicUrl: providerUrl,
        counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: TOKENS.consumerToProvider, outboundToken: TOKENS.providerToConsumer }],
        agreements: { 'agreement-endless': { assetId: 'endless', counterparty: 'consumer' } },
      },
    }),
    cluster.dataPlane({ namespace: 'la-provider', instanceId: 'la-provider-dp', fileRoot: cluster.root, provisioners: [], rateLimitBytesPerSec: 1024 * 1024 }),
  ]);
  consumer = cluster.clientFor('la-consumer').ferry;
  provider = cluster.clientFor('la-provider').ferry;
});

afterAll(async () => {
  proxy?.closeAllConnections();
  proxy?.close();
  await cluster?.shutdown();
});

describe('a message taken whose answer was lost', () => {
  it('a suspension the provider took but never answered: the consumer gives up on it and still tells the provider, so both end TERMINATED', async () => {
    const { processId } = await consumer.startTransfer({
      connectorId: 'consumer',
      processId: 'lost-answer-1',
      counterpartyAddress: proxyUrl,
      agreementId: 'agreement-endless',
      assetId: 'endless',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'la/inbox' },
      // the consumer's own budget for its messages: short, so it gives up on the lost answers soon
      settings: { counterpartyRetryBudget: '5s' },
    });
    const providerPid = providerPidFor('consumer', processId);
    await consumer.waitForState('consumer', processId, ['STARTED']);
    await provider.waitForState('provider', providerPid, ['STARTED']);

    await consumer.suspend('consumer', processId, 'pause');
    const ended = await consumer.result('consumer', processId);
    expect(ended.state).toBe('TERMINATED');
    expect(ended.reason).toMatch(/^counterparty did not take TransferSuspensionMessage/);
    // the provider took the suspension (its answer was lost); the termination message reaches it all the same
    const providerEnd = await provider.waitForState('provider', providerPid, ['TERMINATED'], 120_000);
    expect(providerEnd.reason).toMatch(/^terminated by counterparty: the consumer could not go on with the transfer \(ref [0-9a-f]{8}\)$/);
    expect(statesOf(providerEnd)).toContain('SUSPENDED');
  });
});
