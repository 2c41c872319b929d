import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataAddress } from '../../src/DataAddress.js';
import { SecretBox } from '../../src/secrets.js';
import { callbackSigner, startCallbackServer, type CallbackServer, type CallbackTarget } from '../../worker/callbackServer.js';

const key = randomBytes(32);
const signer = callbackSigner(key);
const target: CallbackTarget = { workflowId: 'dataflow-c1-p1', op: 'provision', provisioner: 'svc', side: 'destination' };

const post = (url: string, body: string | object) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });

describe('callbackSigner', () => {
  it('signs every field and builds an encoded URL', () => {
    const url = new URL(signer.callbackUrl('http://dp:8080/', { ...target, workflowId: 'wf with space&x=1' }));
    expect(url.pathname).toBe('/callbacks/provision');
    expect(url.searchParams.get('wf')).toBe('wf with space&x=1');
    expect(url.searchParams.get('sig')).toBe(signer.sign('wf with space&x=1', 'provision', 'svc', 'destination'));
    const sig = signer.sign(target.workflowId, target.op, target.provisioner, target.side);
    expect(signer.verify(target, sig)).toBe(true);
    expect(signer.verify({ ...target, side: 'source' }, sig)).toBe(false);
    expect(signer.verify({ ...target, op: 'deprovision' }, sig)).toBe(false);
    expect(signer.verify(target, callbackSigner(randomBytes(32)).sign(target.workflowId, target.op, target.provisioner, target.side))).toBe(false);
    expect(signer.verify(target, '')).toBe(false);
    expect(() => callbackSigner(Buffer.alloc(8))).toThrow(/at least/);
  });
});

describe('callback server without Temporal', () => {
  let server: CallbackServer;
  beforeAll(async () => {
    // Nothing listens there: requests that must be refused before signalling never notice.
    const client = new Client({ connection: Connection.lazy({ address: '127.0.0.1:1' }) });
    server = await startCallbackServer({ host: '127.0.0.1', port: 0, client, key, signalTimeoutMs: 1000, logger: { warn: () => undefined } });
  });
  afterAll(() => server.close());

  it('answers health checks and unknown routes', async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    const get = await fetch(signer.callbackUrl(server.url, target));
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
  });

  it('refuses a bad or missing signature with 403', async () => {
    const good = new URL(signer.callbackUrl(server.url, target));
    const forged = new URL(good);
    forged.searchParams.set('side', 'source');
    const noSig = new URL(good);
    noSig.searchParams.delete('sig');
    const badOp = new URL(good);
    badOp.searchParams.set('op', 'explode');
    for (const url of [forged, noSig, badOp, new URL(signer.callbackUrl(server.url, target).replace(/sig=[^&]+/, 'sig=AAAA'))]) {
      const res = await post(url.toString(), { ok: true });
      expect(res.status, url.toString()).toBe(403);
      expect(await res.json()).toEqual({ error: 'invalid callback signature' });
    }
  });

  it('refuses a bad body with 400 and a clear error', async () => {
    const url = signer.callbackUrl(server.url, target);
    const notJson = await post(url, '{oops');
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toEqual({ error: 'invalid callback body: not JSON' });
    const wrong = await post(url, { ok: 'yes', address: { endpointType: 'Ftp', endpoint: '' } });
    expect(wrong.status).toBe(400);
    const { error } = (await wrong.json()) as { error: string };
    expect(error).toMatch(/^invalid callback body: /);
    expect(error).toMatch(/ok/);
    expect(error).toMatch(/endpointType/);
  });

  it('refuses bodies over 1 MiB with 413 and keeps serving', async () => {
    const res = await post(signer.callbackUrl(server.url, target), { ok: true, error: 'x'.repeat(1024 * 1024 + 1) });
    expect(res.status).toBe(413);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('answers 503 when Temporal cannot be reached', async () => {
    const res = await post(signer.callbackUrl(server.url, target), { ok: false, error: 'boom' });
    expect(res.status).toBe(503);
  });
});

/** The Temporal CLI dev server, if this machine has one (the integration tests need it anyway). */
function findTemporalCli(): string | undefined {
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const candidates = [process.env.TEMPORAL_CLI, path.join(repo, '.tools/venv/bin/temporal')];
  return candidates.find((p): p is string => !!p && existsSync(p));
}
const cli = findTemporalCli();

describe.skipIf(!cli)('callback server with a Temporal dev server', () => {
  let env: TestWorkflowEnvironment;
  let server: CallbackServer;
  const secrets = SecretBox.fromBase64(SecretBox.generateKeyBase64());

  beforeAll(async () => {
    env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: cli! }, ip: '127.0.0.1' } });
    server = await startCallbackServer({ host: '127.0.0.1', port: 0, client: env.client, key, secrets });
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await env?.teardown();
  }, 60_000);

  it('answers 404 for a workflow that does not exist', async () => {
    const res = await post(signer.callbackUrl(server.url, { ...target, workflowId: `missing-${Date.now()}` }), { ok: true });
    expect(res.status).toBe(404);
  });

  it('signals the workflow with the address sealed', async () => {
    const workflowId = `cb-test-${Date.now()}`;
    // No worker polls this queue: the workflow exists and records signals, which is all this needs.
    const handle = await env.client.workflow.start('notImplemented', { taskQueue: 'ferry-callback-test', workflowId, args: [] });
    try {
      const address: DataAddress = {
        endpointType: 'HttpData',
        endpoint: 'https://example.org/x',
        endpointProperties: [{ name: 'authorization', value: 'Bearer s3cr3t' }],
      };
      const res = await post(signer.callbackUrl(server.url, { ...target, workflowId }), { ok: true, address });
      expect(res.status).toBe(202);

      const history = await handle.fetchHistory();
      const signaled = history.events?.find((e) => e.workflowExecutionSignaledEventAttributes)?.workflowExecutionSignaledEventAttributes;
      expect(signaled?.signalName).toBe('provisionerCallback');
      const data = signaled?.input?.payloads?.[0]?.data;
      expect(Buffer.from(data!).toString()).not.toContain('s3cr3t');
      const callback = JSON.parse(Buffer.from(data!).toString()) as { address: DataAddress };
      expect(callback).toMatchObject({ op: 'provision', provisioner: 'svc', side: 'destination', ok: true });
      expect(secrets.open(callback.address)).toEqual(address);
    } finally {
      await handle.terminate('test done');
    }
  });
});
