import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataAddress } from '../../src/DataAddress.js';
import { Keyring } from '../../src/keys.js';
import { callbackSigner, startCallbackServer, type CallbackServer, type CallbackTarget } from '../../worker/callbackServer.js';

const keys = Keyring.generate('cb-a');
const signer = callbackSigner(keys);
const HOUR = 3_600_000;
/** URLs carry whole seconds. */
const inAnHour = () => new Date(Math.ceil((Date.now() + HOUR) / 1000) * 1000);
const target: CallbackTarget = { workflowId: 'dataflow-c1-p1', op: 'provision', provisioner: 'svc', side: 'destination', round: 'round-1', expiresAt: inAnHour() };

const post = (url: string, body: string | object) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
const paramsOf = (url: string) => new URL(url).searchParams;
const withParam = (url: string, name: string, value: string | null) => {
  const u = new URL(url);
  if (value === null) u.searchParams.delete(name);
  else u.searchParams.set(name, value);
  return u.toString();
};

describe('callbackSigner', () => {
  it('signs every field, the round and the expiry, and builds an encoded URL', () => {
    const url = signer.callbackUrl('http://dp:8080/', { ...target, workflowId: 'wf with space&x=1' });
    const u = new URL(url);
    expect(u.pathname).toBe('/callbacks/provision');
    expect(u.searchParams.get('wf')).toBe('wf with space&x=1');
    expect(u.searchParams.get('round')).toBe('round-1');
    expect(u.searchParams.get('kid')).toBe('cb-a');
    expect(u.searchParams.get('exp')).toBe(String(target.expiresAt.getTime() / 1000));
    expect(signer.verify(u.searchParams)).toEqual({ ok: true, target: { ...target, workflowId: 'wf with space&x=1' } });
  });

  it('refuses (403) a URL with any field changed, no signature, another key or an unknown kid', () => {
    const url = signer.callbackUrl('http://dp', target);
    const changed = [
      withParam(url, 'wf', 'dataflow-other'),
      withParam(url, 'op', 'deprovision'),
      withParam(url, 'p', 'other'),
      withParam(url, 'side', 'source'),
      withParam(url, 'exp', String(target.expiresAt.getTime() / 1000 + 3600)),
      withParam(url, 'sig', null),
      withParam(url, 'sig', ''),
      withParam(url, 'kid', 'cb-b'),
      withParam(url, 'kid', null),
      withParam(url, 'exp', 'soon'),
      callbackSigner(Keyring.generate('cb-a')).callbackUrl('http://dp', target),
    ];
    for (const u of changed) expect(signer.verify(paramsOf(u)), u).toEqual({ ok: false, status: 403, message: 'invalid callback signature' });
  });

  it('binds a URL to its round: the URL of round 1 cannot report for round 2, nor for no round', () => {
    const round1 = signer.callbackUrl('http://dp', target);
    expect(signer.verify(paramsOf(withParam(round1, 'round', 'round-2')))).toMatchObject({ ok: false, status: 403 });
    expect(signer.verify(paramsOf(withParam(round1, 'round', null)))).toMatchObject({ ok: false, status: 403 });
    const { round: _none, ...noRound } = target;
    expect(signer.verify(paramsOf(withParam(signer.callbackUrl('http://dp', noRound), 'round', 'round-1')))).toMatchObject({ ok: false, status: 403 });
  });

  it('refuses an expired URL with 410, but only once its signature holds (a forged one stays 403)', () => {
    const url = signer.callbackUrl('http://dp', target);
    const after = new Date(target.expiresAt.getTime() + 1);
    expect(signer.verify(paramsOf(url), new Date(target.expiresAt.getTime() - 1000))).toMatchObject({ ok: true });
    expect(signer.verify(paramsOf(url), target.expiresAt)).toEqual({ ok: false, status: 410, message: 'callback URL expired' });
    expect(signer.verify(paramsOf(url), after)).toEqual({ ok: false, status: 410, message: 'callback URL expired' });
    expect(signer.verify(paramsOf(withParam(url, 'side', 'source')), after)).toMatchObject({ ok: false, status: 403 });
  });

  it('rotates: URLs handed out under A still verify with [B, A]; new ones are signed by B; with [B] alone A’s are refused', () => {
    const old = signer.callbackUrl('http://dp', target);
    const b = Keyring.generate('cb-b');
    const rotated = callbackSigner(keys.rotatedTo(b.primary));
    expect(rotated.verify(paramsOf(old))).toMatchObject({ ok: true });
    const fresh = rotated.callbackUrl('http://dp', target);
    expect(paramsOf(fresh).get('kid')).toBe('cb-b');
    expect(signer.verify(paramsOf(fresh))).toMatchObject({ ok: false, status: 403 });
    expect(callbackSigner(b).verify(paramsOf(old))).toMatchObject({ ok: false, status: 403 });
    expect(callbackSigner(b).verify(paramsOf(fresh))).toMatchObject({ ok: true });
  });
});

describe('callback server without Temporal', () => {
  let server: CallbackServer;
  beforeAll(async () => {
    // Nothing listens there: requests that must be refused before signalling never notice.
    const client = new Client({ connection: Connection.lazy({ address: '127.0.0.1:1' }) });
    server = await startCallbackServer({ host: '127.0.0.1', port: 0, client, keys, signalTimeoutMs: 1000, logger: { warn: () => undefined } });
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
    const otherRound = new URL(good);
    otherRound.searchParams.set('round', 'round-2');
    for (const url of [forged, noSig, badOp, otherRound, new URL(signer.callbackUrl(server.url, target).replace(/sig=[^&]+/, 'sig=AAAA'))]) {
      const res = await post(url.toString(), { ok: true });
      expect(res.status, url.toString()).toBe(403);
      expect(await res.json()).toEqual({ error: 'invalid callback signature' });
    }
  });

  it('refuses an expired URL with 410 before it reads the body', async () => {
    const expired = signer.callbackUrl(server.url, { ...target, expiresAt: new Date(Math.floor(Date.now() / 1000 - 1) * 1000) });
    for (const body of [{ ok: true }, '{not json']) {
      const res = await post(expired, body);
      expect(res.status).toBe(410);
      expect(await res.json()).toEqual({ error: 'callback URL expired' });
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
  /** The server's clock: a test moves it past a URL's expiry instead of waiting. */
  let now = new Date();

  beforeAll(async () => {
    env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: cli! }, ip: '127.0.0.1' } });
    server = await startCallbackServer({ host: '127.0.0.1', port: 0, client: env.client, keys, now: () => now });
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await env?.teardown();
  }, 60_000);

  /** A workflow no worker runs: it exists and records signals, which is all these tests need. */
  const recorder = (name: string) => env.client.workflow.start('notImplemented', { taskQueue: 'ferry-callback-test', workflowId: `cb-${name}-${Date.now()}`, args: [] });
  const signalsOf = async (handle: WorkflowHandle) =>
    ((await handle.fetchHistory()).events ?? [])
      .map((e) => e.workflowExecutionSignaledEventAttributes)
      .filter((a) => !!a)
      .map((a) => ({ name: a!.signalName, input: JSON.parse(Buffer.from(a!.input!.payloads![0]!.data!).toString()) as Record<string, unknown> }));

  it('answers 404 for a workflow that does not exist', async () => {
    const res = await post(signer.callbackUrl(server.url, { ...target, workflowId: `missing-${Date.now()}` }), { ok: true });
    expect(res.status).toBe(404);
  });

  it('signals the workflow with the round and the address', async () => {
    const handle = await recorder('signal');
    try {
      const address: DataAddress = { endpointType: 'HttpData', endpoint: 'https://example.org/x', endpointProperties: [{ name: 'authorization', value: 'Bearer s3cr3t' }] };
      const res = await post(signer.callbackUrl(server.url, { ...target, workflowId: handle.workflowId }), { ok: true, address });
      expect(res.status).toBe(202);
      expect(await signalsOf(handle)).toEqual([
        { name: 'provisionerCallback', input: { op: 'provision', provisioner: 'svc', side: 'destination', round: 'round-1', ok: true, address } },
      ]);
    } finally {
      await handle.terminate('test done');
    }
  });

  it('a URL replayed after its expiry is refused with 410 and signals nothing', async () => {
    const handle = await recorder('replay');
    try {
      now = new Date();
      const url = signer.callbackUrl(server.url, { ...target, workflowId: handle.workflowId, expiresAt: new Date(Math.floor(now.getTime() / 1000 + 60) * 1000) });
      expect((await post(url, { ok: true })).status).toBe(202);
      now = new Date(now.getTime() + 61_000);
      const replay = await post(url, { ok: true, address: { endpointType: 'HttpData', endpoint: 'https://attacker.example/in', endpointProperties: [] } });
      expect(replay.status).toBe(410);
      expect(await signalsOf(handle)).toHaveLength(1);
    } finally {
      now = new Date();
      await handle.terminate('test done');
    }
  });

  it('the URL of round 1 reports for round 1 only: its signal names round 1, and one relabelled round 2 signals nothing', async () => {
    const handle = await recorder('rounds');
    try {
      const round1 = signer.callbackUrl(server.url, { ...target, workflowId: handle.workflowId, round: 'r1' });
      expect((await post(withParam(round1, 'round', 'r2'), { ok: true })).status).toBe(403);
      expect((await post(round1, { ok: true })).status).toBe(202);
      const round2 = signer.callbackUrl(server.url, { ...target, workflowId: handle.workflowId, round: 'r2' });
      expect((await post(round2, { ok: false, error: 'no' })).status).toBe(202);
      // the DataFlow tells them apart by round: it accepts only the round it waits for
      expect((await signalsOf(handle)).map((s) => [s.input.round, s.input.ok])).toEqual([
        ['r1', true],
        ['r2', false],
      ]);
    } finally {
      await handle.terminate('test done');
    }
  });
});
