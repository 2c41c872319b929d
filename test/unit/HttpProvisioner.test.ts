import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HttpProvisioner } from '../../activities/provisioners/HttpProvisioner.js';
import type { DataAddress } from '../../src/DataAddress.js';
import { ProvisionRejected, type ProvisionRequest } from '../../src/Provisioner.js';
import { DataPlaneConfigSchema } from '../../src/config.js';
import { buildProvisioners } from '../../worker/dataPlaneWorker.js';
import { startProvisioningService, type ProvisioningService } from '../fixtures/provisioningService.js';

/** Stands in for the data plane's callback endpoint: records what the service posts back. */
let receiver: Server;
let receiverUrl: string;
const received: { url: string; body: unknown }[] = [];

beforeAll(async () => {
  receiver = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    received.push({ url: req.url ?? '', body: JSON.parse(Buffer.concat(chunks).toString()) });
    res.writeHead(202).end();
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => receiver.close(() => r())));

let svc: ProvisioningService;
let dir: string;
beforeEach(async () => {
  received.length = 0;
  dir = await mkdtemp(path.join(tmpdir(), 'ferry-httpprov-'));
  svc = await startProvisioningService({ mode: 'sync' });
});
afterEach(async () => {
  await svc.close();
  await rm(dir, { recursive: true, force: true });
});

const provisioner = (extra: Partial<ConstructorParameters<typeof HttpProvisioner>[0]> = {}) =>
  new HttpProvisioner({
    name: 'svc',
    url: `${svc.url}/`,
    side: 'destination',
    endpointTypes: ['File', 'HttpData'],
    headers: { authorization: 'Bearer service-credential' },
    ...extra,
  });
const file = (): DataAddress => ({ endpointType: 'File', endpoint: dir, endpointProperties: [] });
const request = (address: DataAddress): ProvisionRequest => ({
  flowId: 'flow-7',
  workflowId: 'dataflow-c-flow-7',
  role: 'CONSUMER',
  side: 'destination',
  address,
  callbackUrl: `${receiverUrl}/cb?x=1`,
});

describe('HttpProvisioner', () => {
  it('applies to its side and endpoint types', () => {
    const p = provisioner({ endpointTypes: ['HttpData'] });
    expect(p.appliesTo('PROVIDER', 'destination', { endpointType: 'HttpData', endpoint: 'http://x', endpointProperties: [] })).toBe(true);
    expect(p.appliesTo('PROVIDER', 'destination', file())).toBe(false);
    expect(p.appliesTo('PROVIDER', 'source', { endpointType: 'HttpData', endpoint: 'http://x', endpointProperties: [] })).toBe(false);
  });

  it('sync: returns the rewritten address and sends the documented request', async () => {
    const result = await provisioner().provision(request(file()));
    const svcDir = path.join(dir, 'svc-flow-7');
    expect(result.pending).toBe(false);
    expect(result.address?.endpoint).toBe(svcDir);
    expect(result.resource).toEqual({ svcPath: svcDir, flowId: 'flow-7' });
    expect((await stat(svcDir)).isDirectory()).toBe(true);
    const [req] = svc.requests;
    expect(req?.op).toBe('provision');
    expect(req?.body).toEqual({ flowId: 'flow-7', role: 'CONSUMER', side: 'destination', address: file(), callbackUrl: `${receiverUrl}/cb?x=1` });
    expect(req?.headers.authorization).toBe('Bearer service-credential');
  });

  it('a configured provisioner sends the headers of its config (the service\'s credentials); a header name or value that could split a request is refused at start-up', async () => {
    const config = (headers: Record<string, string>) =>
      DataPlaneConfigSchema.safeParse({ instanceId: 'dp', fileRoot: dir, provisioners: [{ kind: 'http', name: 'svc', url: svc.url, side: 'destination', endpointTypes: ['File'], headers }] });
    const good = config({ authorization: 'Bearer from-config', 'x-tenant': 't-1' });
    expect(good.success).toBe(true);
    const [p] = buildProvisioners(good.data!);
    await p!.provision(request(file()));
    expect(svc.requests[0]?.headers.authorization).toBe('Bearer from-config');
    expect(svc.requests[0]?.headers['x-tenant']).toBe('t-1');
    expect(config({ 'bad name': 'x' }).success).toBe(false);
    expect(config({ 'x-ok': 'a\r\nx-injected: 1' }).success).toBe(false);
  });

  it('202 without an address: pending, rewriting nothing (the callback may), then the service calls back', async () => {
    svc.setMode('async');
    const result = await provisioner().provision(request(file()));
    expect(result).toEqual({ pending: true, resource: { svcPath: path.join(dir, 'svc-flow-7'), flowId: 'flow-7' } });
    const [cb] = await svc.waitForCallbacks(1);
    expect(cb?.status).toBe(202);
    expect(received[0]?.url).toBe('/cb?x=1');
    expect(received[0]?.body).toMatchObject({ ok: true, address: { endpoint: path.join(dir, 'svc-flow-7') } });
  });

  it('held callbacks go out on releasePending', async () => {
    await svc.close();
    svc = await startProvisioningService({ mode: 'async', autoRelease: false });
    expect((await provisioner().provision(request(file()))).pending).toBe(true);
    expect(svc.callbacks).toEqual([]);
    const sent = await svc.releasePending();
    expect(sent.map((c) => c.status)).toEqual([202]);
    expect(received).toHaveLength(1);
  });

  it('400: ProvisionRejected carrying the service message', async () => {
    svc.setMode('reject');
    const err = await provisioner().provision(request(file())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProvisionRejected);
    expect((err as Error).message).toMatch(/400: fixture rejected the provision request/);
    expect((err as Error).message).not.toContain('service-credential');
  });

  it('500, network errors and timeouts: retryable errors', async () => {
    svc.setMode('fail');
    const err = await provisioner().provision(request(file())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(ProvisionRejected);
    expect((err as Error).message).toMatch(/500: fixture provision failure/);

    // A port nobody listens on any more.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await provisioner({ url: `http://127.0.0.1:${port}` }).provision(request(file())).catch((e: unknown) => e);
    expect(refused).not.toBeInstanceOf(ProvisionRejected);
    expect((refused as Error).message).toMatch(/ECONNREFUSED/);

    // A service that accepts the request and never answers.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const timedOut = await provisioner({ url, timeoutMs: 200 }).provision(request(file())).catch((e: unknown) => e);
      expect(timedOut).not.toBeInstanceOf(ProvisionRejected);
      expect((timedOut as Error).message).toMatch(/timed out after 200 ms/);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('invalid 200 answer: a clear retryable error', async () => {
    const bad = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"address":{"endpointType":"Ftp"}}'));
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(bad.address() as AddressInfo).port}`;
      const err = await provisioner({ url }).provision(request(file())).catch((e: unknown) => e);
      expect(err).not.toBeInstanceOf(ProvisionRejected);
      expect((err as Error).message).toMatch(/invalid provision answer.*endpointType/s);
    } finally {
      await new Promise<void>((r) => bad.close(() => r()));
    }
  });

  it('deprovision: 200 done, 202 pending, 400 rejected, 500 retryable', async () => {
    const p = provisioner();
    const req = { flowId: 'flow-7', side: 'destination' as const, resource: { flowId: 'flow-7' }, reason: 'completed' as const, callbackUrl: `${receiverUrl}/cb` };
    expect(await p.deprovision(req)).toEqual({ pending: false });
    expect(svc.requests[0]?.body).toEqual(req);
    svc.setMode('async');
    expect(await p.deprovision(req)).toEqual({ pending: true });
    await svc.waitForCallbacks(1);
    expect(received[0]?.body).toEqual({ ok: true });
    svc.setMode('reject');
    await expect(p.deprovision(req)).rejects.toBeInstanceOf(ProvisionRejected);
    svc.setMode('fail');
    await expect(p.deprovision(req)).rejects.toThrow(/500/);
    await expect(p.deprovision(req)).rejects.not.toBeInstanceOf(ProvisionRejected);
  });

  it('deprovision: 404 means already released', async () => {
    const gone = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
      expect(
        await provisioner({ url }).deprovision({ flowId: 'f', side: 'destination', resource: {}, reason: 'failed', callbackUrl: 'x' }),
      ).toEqual({ pending: false });
    } finally {
      await new Promise<void>((r) => gone.close(() => r()));
    }
  });
});

describe('HttpProvisioner and the URL policy', () => {
  it('refuses a service URL with credentials in it (they would leak into errors)', () => {
    expect(() => new HttpProvisioner({ name: 'p', url: 'http://user:pw@127.0.0.1:1/', side: 'destination', endpointTypes: ['File'] })).toThrow(/credentials/);
  });

  it('never follows a redirect and refuses it for good', async () => {
    const server = createServer((_req, res) => res.writeHead(307, { location: 'http://169.254.169.254/' }).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const p = new HttpProvisioner({ name: 'p', url: `http://127.0.0.1:${port}`, side: 'destination', endpointTypes: ['File'] });
    await expect(
      p.provision({ flowId: 'f', workflowId: 'w', role: 'CONSUMER', side: 'destination', address: { endpointType: 'File', endpoint: 'x', endpointProperties: [] }, callbackUrl: 'http://127.0.0.1:1/cb' }),
    ).rejects.toBeInstanceOf(ProvisionRejected);
    server.close();
  });
});
