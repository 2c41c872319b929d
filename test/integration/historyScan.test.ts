import { Client } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ferryDataConverter } from '../../src/codec.js';
import { Keyring } from '../../src/keys.js';
import { startDevServer } from '../../worker/devServer.js';
import { needlesOf, scanBuffer, scanHistories, scanLogs, secretsOf } from '../support/historyScan.js';

/**
 * The history scan finds what it must: a secret written without the codec, in plain, in base64 at
 * any alignment and in base64url, in inputs, memos and failure messages, in every namespace it is
 * given; and nothing in what the codec encrypted. (Every cluster runs it at shutdown; this is the
 * test that it can fail.)
 */
let env: TestWorkflowEnvironment;
const SECRET = 'scan-me-secret-4b1d9e07';
const KEY = Keyring.generate('scan-key');

beforeAll(async () => {
  env = await startDevServer({ extraNamespaces: ['other-ns'] });
});
afterAll(async () => {
  await env?.teardown();
});

/** Starts a workflow no worker runs (its start event is all the scan needs). */
const record = (client: Client, workflowId: string, args: unknown[], memo?: Record<string, unknown>) =>
  client.workflow.start('notImplemented', { taskQueue: 'scan-test', workflowId, args, ...(memo ? { memo } : {}) });

describe('history scan', () => {
  it('finds a secret stored without the codec (plain, base64 at any offset, base64url, memo, termination reason) in every namespace', async () => {
    const plain = new Client({ connection: env.connection, namespace: 'other-ns' });
    const secrets = secretsOf('test secret', SECRET);
    await record(plain, 'plain-input', [{ header: SECRET }]);
    for (const offset of [0, 1, 2]) await record(plain, `b64-${offset}`, [{ blob: Buffer.from('x'.repeat(offset) + SECRET).toString('base64') }]);
    await record(plain, 'b64url', [{ blob: Buffer.from(`??${SECRET}`).toString('base64url') }]);
    await record(plain, 'memo', [], { note: `cookie=${SECRET}` });
    const h = await record(plain, 'reason', []);
    await h.terminate(`failed at https://x.example/?access_token=${SECRET}`);

    // visibility trails a start: the workflows just started are named too, so the scan reads them whatever it lists
    const started = ['plain-input', 'b64-0', 'b64-1', 'b64-2', 'b64url', 'memo', 'reason'].map((workflowId) => ({ namespace: 'other-ns', workflowId }));
    const scan = await scanHistories(env.client, ['default', 'other-ns'], secrets, started);
    const hit = (id: string) => scan.findings.filter((f) => f.where.startsWith(`other-ns/${id} `));
    expect(hit('plain-input')[0]).toMatchObject({ label: 'test secret', form: 'plain' });
    for (const offset of [0, 1, 2]) expect(hit(`b64-${offset}`)[0]?.form, `offset ${offset}`).toMatch(/^base64 \(offset \d\)$/);
    expect(hit('b64url')[0]?.form).toMatch(/^base64/);
    expect(hit('memo')).toHaveLength(1);
    expect(hit('reason')).toHaveLength(1);
    // a finding names the secret's label, never the secret
    expect(JSON.stringify(scan.findings)).not.toContain(SECRET);
  });

  it('finds nothing in what the codec encrypted, and counts the encrypted payloads', async () => {
    const encrypted = new Client({ connection: env.connection, dataConverter: ferryDataConverter(KEY) });
    const h = await record(encrypted, 'encrypted', [{ header: SECRET, key: KEY.primary.key.toString('base64') }], { note: SECRET });
    // (a Temporal terminate reason is not a payload: the server keeps it in plain, as the test above shows)
    await h.terminate('done');
    const scan = await scanHistories(env.client, ['default'], [...secretsOf('test secret', SECRET), ...secretsOf('codec', KEY)], [{ namespace: 'default', workflowId: 'encrypted' }]);
    expect(scan.findings).toEqual([]);
    expect(scan.workflows).toBe(1);
    // input and memo
    expect(scan.encryptedPayloads).toBeGreaterThanOrEqual(2);
  });

  it('finds raw keys (as bytes, base64, base64url or hex) and secrets in logs', () => {
    const [key] = secretsOf('codec', KEY);
    for (const form of [KEY.primary.key, Buffer.from(KEY.primary.key.toString('base64')), Buffer.from(KEY.primary.key.toString('base64url')), Buffer.from(KEY.primary.key.toString('hex'))]) {
      expect(scanBuffer(Buffer.concat([Buffer.from('prefix '), form, Buffer.from(' suffix')]), [key!], 'test')).toHaveLength(1);
    }
    expect(scanLogs([{ name: 'worker', text: `GET /in?sig=${encodeURIComponent(SECRET)} 403` }], secretsOf('s', SECRET))).toEqual([{ label: 's', form: 'plain', where: 'log worker' }]);
    expect(scanLogs([{ name: 'worker', text: 'nothing here' }], secretsOf('s', SECRET))).toEqual([]);
    expect(() => needlesOf({ label: 'short', value: Buffer.from('abc') })).toThrow(/too short/);
  });
});
