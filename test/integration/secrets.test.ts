import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/client.js';
import { dataFlowWorkflowId, inClusterAddress, transferProcessWorkflowId } from '../../src/ids.js';
import { formatStatus } from '../../worker/cli.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { scanHistories, secretsOf } from '../support/historyScan.js';
import { flowStatus } from '../support/transfers.js';

/**
 * Credentials under names no regex foresaw (`header:Cookie`, `header:X-Signature`), in endpoint
 * query strings (`?access_token=`, `?sig=`) and in URLs (`user:pass@`), through all four histories
 * of an HttpData push (consumer and provider, TransferProcess and DataFlow): none may be stored in
 * plain, shown by `ferry status`, carried in a termination reason or written to a worker log; a
 * pre-signed URL must still work.
 */
let cluster: Cluster;
let source: Server;
let sink: Server;
const seen: { url: string; headers: IncomingMessage['headers'] }[] = [];

const COOKIE = 'session=cookie-secret-7f3a9c21';
const SIGNATURE = 'x-signature-secret-51be04d2';
const SOURCE_TOKEN = 'source-access-token-c4e8a1f0';
const SINK_SIG = 'presigned-sig-secret-9d2b7e66';
const REASON_TOKEN = 'reason-token-secret-0a6f3d95';
const PASSWORD = 'url-password-secret-e81c5b47';

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  cluster = await startCluster();
  for (const s of [COOKIE, SIGNATURE, SOURCE_TOKEN, SINK_SIG, REASON_TOKEN, PASSWORD]) cluster.registerSecret(s, `test credential ${s.split('-')[0]}`);
  source = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    // a pre-signed source: its token is in the query, and it wants the signature header
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.searchParams.get('access_token') !== SOURCE_TOKEN || req.headers['x-signature'] !== SIGNATURE) return void res.writeHead(401).end();
    res.writeHead(200, { 'content-type': 'text/plain' }).end('the data');
  });
  sink = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/forbidden') return void res.writeHead(403).end();
      res.writeHead(url.searchParams.get('sig') === SINK_SIG && req.headers.cookie === COOKIE ? 204 : 401).end();
    });
  });
  const sourceUrl = await listen(source);
  await listen(sink);
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['HttpData-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [] }),
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['HttpData-PUSH'] }],
      assets: {
        api: { endpointType: 'HttpData', endpoint: `${sourceUrl}/data?access_token=${SOURCE_TOKEN}&format=csv`, endpointProperties: [{ name: 'header:X-Signature', value: SIGNATURE }] },
      },
      agreements: { 'agreement-1': { assetId: 'api', counterparty: 'consumer' } },
    }),
    // source and sink are on loopback, which a data plane reaches only when allowed
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [], allowedNetworks: ['127.0.0.0/8'] }),
  ]);
});

afterAll(async () => {
  source?.close();
  sink?.close();
  await cluster?.shutdown(); // scans every history and the SDK log for the credentials above
});

const sinkUrl = () => `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
const push = (processId: string, endpoint: string) =>
  cluster.ferry.startTransfer({
    connectorId: 'consumer',
    processId,
    counterpartyAddress: inClusterAddress('provider'),
    agreementId: 'agreement-1',
    assetId: 'api',
    transferType: 'HttpData-PUSH',
    dataDestination: { endpointType: 'HttpData', endpoint, endpointProperties: [{ name: 'method', value: 'PUT' }, { name: 'header:Cookie', value: COOKIE }] },
  });

/** Everything an operator can see of a transfer: both processes' and both flows' status, as JSON and as `ferry status` prints it. */
async function everythingShown(processId: string): Promise<string> {
  const consumer = await cluster.ferry.status('consumer', processId);
  const provider = await cluster.ferry.status('provider', consumer.counterpartyPid!);
  const flows = [await flowStatus(cluster.client, 'consumer', processId), await flowStatus(cluster.client, 'provider', consumer.counterpartyPid!)];
  return [JSON.stringify([consumer, provider, flows]), formatStatus(consumer), formatStatus(provider)].join('\n');
}

describe('credentials under any name', () => {
  it('a pre-signed push with header:Cookie and header:X-Signature: delivered, and no credential in the four histories or in status', async () => {
    const { processId } = await push('cookie-1', `${sinkUrl()}/in?sig=${SINK_SIG}&part=1`);
    expect(await cluster.ferry.result('consumer', processId)).toEqual({ state: 'COMPLETED', reason: 'transfer completed' });
    // the credentials reached the endpoints that need them, the query ones back in their URLs
    expect(seen.some((r) => r.url === `/data?format=csv&access_token=${SOURCE_TOKEN}` && r.headers['x-signature'] === SIGNATURE)).toBe(true);
    expect(seen.some((r) => r.url === `/in?part=1&sig=${SINK_SIG}` && r.headers.cookie === COOKIE)).toBe(true);

    const shown = await everythingShown(processId);
    for (const secret of [COOKIE, SIGNATURE, SOURCE_TOKEN, SINK_SIG]) expect(shown).not.toContain(secret);
    // masked, not dropped: the operator sees which credentials an address carries
    const status = await cluster.ferry.status('consumer', processId);
    expect(status.dataDestination).toEqual({
      endpointType: 'HttpData',
      endpoint: `${sinkUrl()}/in?part=1`,
      endpointProperties: [
        { name: 'method', value: 'PUT' },
        { name: 'header:Cookie', value: '***' },
        { name: 'query:sig', value: '***' },
      ],
    });

    // the four histories, read raw (no codec): the credentials are nowhere, and the payloads are encrypted
    const provider = status.counterpartyPid!;
    const ids = [transferProcessWorkflowId('consumer', processId), transferProcessWorkflowId('provider', provider), dataFlowWorkflowId('consumer', processId), dataFlowWorkflowId('provider', provider)];
    const secrets = [COOKIE, SIGNATURE, SOURCE_TOKEN, SINK_SIG].flatMap((s) => secretsOf(s, s));
    // the four are named: visibility may not list a workflow yet, and the scan reads these whatever it lists
    const scan = await scanHistories(cluster.client, ['default'], secrets, ids.map((workflowId) => ({ namespace: 'default', workflowId })));
    expect(scan.findings).toEqual([]);
    expect(scan.workflows).toBeGreaterThanOrEqual(ids.length);
    expect(scan.encryptedPayloads).toBeGreaterThan(0);
  });

  it('a failing destination: the provider\'s termination reason names the endpoint without its token', async () => {
    const { processId } = await push('reason-1', `${sinkUrl()}/forbidden?access_token=${REASON_TOKEN}`);
    const result = await cluster.ferry.result('consumer', processId);
    expect(result.state).toBe('TERMINATED');
    const providerPid = (await cluster.ferry.status('consumer', processId)).counterpartyPid!;
    const provider = await cluster.ferry.result('provider', providerPid);
    expect(provider.reason).toMatch(/destination http:\/\/127\.0\.0\.1:\d+\/forbidden answered HTTP 403/);
    expect(provider.reason).not.toContain(REASON_TOKEN);
    expect(result.reason).not.toContain(REASON_TOKEN);
    expect(await everythingShown(processId)).not.toContain(REASON_TOKEN);
    // and the worker's log of the failed activity holds no token either (cluster.shutdown scans it; so does this)
    await cluster.assertNoSecrets();
  });

  it('a user:password@ endpoint is refused before anything starts', async () => {
    const start = push('userinfo-1', `http://uploader:${PASSWORD}@127.0.0.1:9/in`);
    await expect(start).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(start).rejects.toThrow(/endpoint must not carry credentials in the URL \(user:password@\)/);
    await expect(start).rejects.not.toThrow(PASSWORD);
    await expect(cluster.client.workflow.getHandle(transferProcessWorkflowId('consumer', 'userinfo-1')).describe()).rejects.toThrow(/not found/i);
  });
});
