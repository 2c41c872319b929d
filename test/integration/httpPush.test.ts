import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataFlowWorkflowId, inClusterAddress, transferProcessWorkflowId } from '../../src/ids.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { historyPayloads } from '../support/transfers.js';

/**
 * HttpData push: the provider's data plane streams an HTTP source to the consumer's HTTP endpoint.
 * Both ends are real HTTP servers on loopback that check the credentials the addresses carry.
 */
let cluster: Cluster;
let source: Server;
let sink: Server;
const data = randomBytes(5 * 1024 * 1024 + 11);
const dataSha = createHash('sha256').update(data).digest('hex');
const SOURCE_TOKEN = 'Bearer source-credential-123';
const SINK_TOKEN = 'Bearer sink-credential-456';
const received: { path: string; method: string; sha256: string; bytes: number; contentType?: string; auth?: string; custom?: string }[] = [];

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  cluster = await startCluster();
  source = createServer((req, res) => {
    if (req.headers.authorization !== SOURCE_TOKEN) return void res.writeHead(401).end();
    res.writeHead(200, { 'content-type': 'application/x-test', 'content-length': data.length });
    res.end(data);
  });
  sink = createServer(async (req, res) => {
    if (req.url === '/forbidden') return void res.writeHead(403).end();
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of req) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    received.push({
      path: req.url ?? '',
      method: req.method ?? '',
      sha256: hash.digest('hex'),
      bytes,
      ...(req.headers['content-type'] ? { contentType: req.headers['content-type'] } : {}),
      ...(req.headers.authorization ? { auth: req.headers.authorization } : {}),
      ...(req.headers['x-custom'] ? { custom: String(req.headers['x-custom']) } : {}),
    });
    res.writeHead(204).end();
  });
  const [sourceUrl] = [await listen(source), await listen(sink)];
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['HttpData-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [] }),
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['HttpData-PUSH'] }],
      assets: { api: { endpointType: 'HttpData', endpoint: `${sourceUrl}/data`, endpointProperties: [{ name: 'authorization', value: SOURCE_TOKEN }] } },
      agreements: { 'agreement-1': { assetId: 'api', counterparty: 'consumer' } },
    }),
    // source and sink are on loopback, which a data plane reaches only when allowed
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [], allowedNetworks: ['127.0.0.0/8'] }),
  ]);
});

afterAll(async () => {
  source?.close();
  sink?.close();
  await cluster?.shutdown();
});

const sinkUrl = () => `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
const request = (processId: string, path: string) => ({
  connectorId: 'consumer',
  processId,
  counterpartyAddress: inClusterAddress('provider'),
  agreementId: 'agreement-1',
  assetId: 'api',
  transferType: 'HttpData-PUSH' as const,
  dataDestination: {
    endpointType: 'HttpData' as const,
    endpoint: `${sinkUrl()}${path}`,
    endpointProperties: [
      { name: 'method', value: 'PUT' },
      { name: 'authorization', value: SINK_TOKEN },
      { name: 'header:x-custom', value: 'hello' },
    ],
  },
});

describe('HttpData push', () => {
  it('streams the source to the destination with their credentials; sha256 equal; no credential in any history', async () => {
    const { processId, workflowId } = await cluster.ferry.startTransfer(request('http-1', '/inbox/http-1'));
    expect(await cluster.ferry.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    expect(received.find((r) => r.path === '/inbox/http-1')).toEqual({
      path: '/inbox/http-1',
      method: 'PUT',
      sha256: dataSha,
      bytes: data.length,
      contentType: 'application/x-test',
      auth: SINK_TOKEN,
      custom: 'hello',
    });
    const providerPid = (await cluster.ferry.status('consumer', processId)).counterpartyPid!;
    const flow = await cluster.client.workflow.getHandle(dataFlowWorkflowId('provider', providerPid)).query('status');
    expect(flow).toMatchObject({ state: 'COMPLETED', sha256: dataSha, bytesTransferred: data.length });
    for (const id of [workflowId, transferProcessWorkflowId('provider', providerPid), dataFlowWorkflowId('provider', providerPid)]) {
      const payloads = await historyPayloads(cluster.client, id);
      expect(payloads).not.toContain('source-credential');
      expect(payloads).not.toContain('sink-credential');
    }
  });

  it('a destination that refuses (403) fails fast: TERMINATED with the reason, no retries; the consumer hears a generic reason with the same reference', async () => {
    const { processId } = await cluster.ferry.startTransfer(request('http-403', '/forbidden'));
    const result = await cluster.ferry.result('consumer', processId);
    expect(result.state).toBe('TERMINATED');
    const providerPid = (await cluster.ferry.status('consumer', processId)).counterpartyPid!;
    const provider = await cluster.ferry.result('provider', providerPid);
    expect(provider.reason).toMatch(/transfer failed: destination http:\/\/127\.0\.0\.1:\d+\/forbidden answered HTTP 403 \(ref [0-9a-f]{8}\)/);
    // the provider's internals stay home: the consumer learns that it failed, and a reference to ask about
    const ref = /\(ref ([0-9a-f]{8})\)/.exec(provider.reason)![1];
    expect(result.reason).toBe(`terminated by counterparty: the provider could not go on with the transfer (ref ${ref})`);
    expect(result.reason).not.toContain('127.0.0.1');
  });
});
