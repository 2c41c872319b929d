import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ferryDataConverter } from '../src/codec.js';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../src/config.js';
import { Keyring } from '../src/keys.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../worker/bundle.js';
import { startControlPlaneWorker, type RunningControlPlane } from '../worker/controlPlaneWorker.js';
import { startDataPlaneWorker, type RunningDataPlane } from '../worker/dataPlaneWorker.js';
import { startCodecServer } from '../worker/codecServer.js';
import { EncryptionCodec } from '../src/codec.js';
import { startDevServer } from '../worker/devServer.js';

/** The `ferry` CLI as users run it: a real child process against a real (in-memory) dev server. */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(REPO_ROOT, 'worker', 'cli.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let env: TestWorkflowEnvironment;
let address: string;
let dataDir: string;
/** The connector's payload codec keys, given to the CLI in FERRY_CODEC_KEYS. */
const codecKeys = Keyring.generate('cli-test');
const workers: (RunningControlPlane | RunningDataPlane)[] = [];

function ferry(...args: string[]): Promise<Run> {
  return ferryWith({ FERRY_CODEC_KEYS: codecKeys.serialize() }, ...args);
}

function ferryWith(extraEnv: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, FERRY_DATA_DIR: dataDir, ...extraEnv };
  for (const name of ['FERRY_CODEC_KEYS', 'FERRY_CODEC_KEYS_FILE']) if (!(name in extraEnv)) delete childEnv[name];
  delete childEnv.TEMPORAL_ADDRESS;
  delete childEnv.TEMPORAL_NAMESPACE;
  delete childEnv.FERRY_DEBUG;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: REPO_ROOT, env: childEnv, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function workflowIds(): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of env.client.workflow.list()) ids.push(wf.workflowId);
  return ids;
}

const noStackTrace = (text: string) => expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

const REQUEST = ['--connector', 'consumer', '--counterparty', 'temporal://provider', '--agreement', 'agreement-1', '--asset', 'asset-1', '--type', 'File-PUSH'];

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'ferry-cli-test-'));
  env = await startDevServer({ dataConverter: ferryDataConverter(codecKeys) });
  address = env.connection.options.address;
  // a start is refused unless the connector (and an in-cluster counterparty) has a live control plane
  // (and the consumer's data plane, so a started transfer runs to its end: the provider, which has no
  // agreements, refuses it, and nothing is left running when the workers stop)
  const [workflowBundle, dataPlaneBundle] = await Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]);
  const temporal = { address, namespace: 'default' };
  for (const connectorId of ['consumer', 'provider']) {
    const config = ControlPlaneConfigSchema.parse({ connectorId, temporal, dataPlanes: [{ id: `${connectorId}-dp`, transferTypes: ['File-PUSH', 'HttpData-PULL'] }] });
    workers.push(await startControlPlaneWorker(config, { workflowBundle, keys: { codec: codecKeys } }));
  }
  const consumerDp = DataPlaneConfigSchema.parse({ instanceId: 'consumer-dp', temporal, fileRoot: path.join(dataDir, 'files'), provisioners: [] });
  workers.push(await startDataPlaneWorker(consumerDp, { workflowBundle: dataPlaneBundle, keys: { codec: codecKeys } }));
}, 120_000);

afterAll(async () => {
  for (const w of workers.reverse()) await w.shutdown().catch(() => undefined);
  await env?.teardown();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('ferry CLI', () => {
  it('--help prints the usage and exits 0', async () => {
    const top = await ferry('--help');
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Usage: ferry <command>/);
    for (const command of ['start', 'status', 'suspend', 'resume', 'terminate', 'complete', 'approve', 'edr', 'wait', 'keygen']) expect(top.stdout).toContain(command);

    const start = await ferry('start', '--help');
    expect(start.code).toBe(0);
    expect(start.stdout).toContain('--dest PATH');
    expect(start.stdout).toContain('--codec-keys-file');
  });

  it('refuses an escaping --dest with exit 2 and starts nothing', async () => {
    const run = await ferry('start', ...REQUEST, '--dest', '../../etc', '--process-id', 'escape-1', '--address', address);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('invalid transfer request');
    expect(run.stderr).toContain(`File endpoint "../../etc" must be a relative path inside the data plane's file root`);
    noStackTrace(run.stderr);

    expect(await workflowIds()).toEqual([]);
    await expect(env.client.workflow.getHandle('transfer-consumer-escape-1').describe()).rejects.toThrow(/not found/i);
  });

  it('starts a valid request (so the empty list above means something)', async () => {
    const run = await ferry('start', ...REQUEST, '--dest', 'consumer/inbox', '--process-id', 'valid-1', '--address', address, '--ui', 'http://ui.example:8233/');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('valid-1');
    expect(run.stdout).toContain('transfer-consumer-valid-1');
    expect(run.stdout).toContain('http://ui.example:8233/namespaces/default/workflows/transfer-consumer-valid-1');

    const description = await env.client.workflow.getHandle('transfer-consumer-valid-1').describe();
    expect(description.type).toBe('transferProcess');
    // the CLI encrypts what it sends: the stored input names the codec and the key, and hides the destination
    const started = (await env.client.workflow.getHandle('transfer-consumer-valid-1').fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!;
    const input = started.input!.payloads![0]!;
    expect(Buffer.from(input.metadata!.encoding!).toString()).toBe('binary/encrypted');
    expect(Buffer.from(input.metadata!['encryption-key-id']!).toString()).toBe('cli-test');
    expect(Buffer.from(input.data!).toString('latin1')).not.toContain('consumer/inbox');
    // Visibility may trail the start by a moment.
    // (the consumer's data flow and the provider's refusing process follow it; the start made this one)
    const consumerProcesses = async () => (await workflowIds()).filter((id) => id.startsWith('transfer-consumer-'));
    await expect.poll(consumerProcesses, { timeout: 10_000, interval: 200 }).toEqual(['transfer-consumer-valid-1']);
    await env.client.workflow.getHandle('transfer-consumer-valid-1').terminate('test cleanup');
  });

  it('a connector or in-cluster counterparty nobody runs (a typo) is refused (exit 3) and nothing is started', async () => {
    const typo = await ferry('start', ...REQUEST.map((a) => (a === 'consumer' ? 'consumr' : a)), '--dest', 'consumer/inbox', '--process-id', 'typo-1', '--address', address);
    expect(typo.code).toBe(3);
    expect(typo.stderr).toContain('connector consumr has no live control-plane worker');
    noStackTrace(typo.stderr);
    const counterparty = await ferry('start', ...REQUEST.map((a) => (a === 'temporal://provider' ? 'temporal://provder' : a)), '--dest', 'consumer/inbox', '--process-id', 'typo-2', '--address', address);
    expect(counterparty.code).toBe(3);
    expect(counterparty.stderr).toContain('in-cluster counterparty provder has no live control-plane worker');
    for (const id of ['transfer-consumr-typo-1', 'transfer-consumer-typo-2']) {
      await expect(env.client.workflow.getHandle(id).describe()).rejects.toThrow(/not found/i);
    }
  });

  it('a pull takes no --dest: one given is refused (exit 2, nothing started); without one it starts', async () => {
    const pull = REQUEST.map((a) => (a === 'File-PUSH' ? 'HttpData-PULL' : a));
    const refused = await ferry('start', ...pull, '--dest', 'consumer/inbox', '--process-id', 'pull-dest', '--address', address);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('HttpData-PULL takes no dataDestination');
    await expect(env.client.workflow.getHandle('transfer-consumer-pull-dest').describe()).rejects.toThrow(/not found/i);

    const started = await ferry('start', ...pull, '--process-id', 'pull-1', '--address', address);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    const description = await env.client.workflow.getHandle('transfer-consumer-pull-1').describe();
    expect(description.type).toBe('transferProcess');
    await env.client.workflow.getHandle('transfer-consumer-pull-1').terminate('test cleanup');
  });

  it('without codec keys (or with a bad key file) a command is a usage error and starts nothing', async () => {
    const none = await ferryWith({}, 'start', ...REQUEST, '--dest', 'consumer/inbox', '--process-id', 'no-keys', '--address', address);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no payload codec keys');
    expect(none.stderr).toContain('FERRY_CODEC_KEYS');
    noStackTrace(none.stderr);
    const edr = await ferryWith({}, 'edr', 'consumer', 'pull-1', '--address', address);
    expect(edr.code).toBe(2);
    expect(edr.stderr).toContain('--codec-keys-file');
    const bad = await ferryWith({ FERRY_CODEC_KEYS: 'k1:tooshort' }, 'status', 'consumer', 'pull-1', '--address', address);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('invalid keys in FERRY_CODEC_KEYS: entry 1 (k1)');
    const missing = await ferry('status', 'consumer', 'pull-1', '--address', address, '--codec-keys-file', path.join(dataDir, 'nope.keys'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read FERRY_CODEC_KEYS_FILE=.*nope\.keys/);
    await expect(env.client.workflow.getHandle('transfer-consumer-no-keys').describe()).rejects.toThrow(/not found/i);
  });

  it('global options go before the command too (--codec-keys-file FILE status …)', async () => {
    const file = path.join(dataDir, 'codec.keys');
    writeFileSync(file, codecKeys.serialize());
    const run = await ferryWith({}, '--codec-keys-file', file, '--address', address, 'status', 'consumer', 'nope-1', '--timeout', '2');
    expect(run.stderr).toContain('no transfer nope-1 of connector consumer');
    expect(run.code).toBe(1);
  });

  it('with a codec server instead of keys (--codec-endpoint, --codec-auth): starts, encrypted under the server’s key; a wrong token is a clear failure', async () => {
    const token = 'cli-codec-token-0123456789abcdef';
    const server = await startCodecServer({ host: '127.0.0.1', port: 0, codec: new EncryptionCodec(codecKeys), tokens: [{ id: 'cli', token }], corsOrigins: [], log: () => undefined });
    try {
      const run = await ferryWith({ FERRY_CODEC_ENDPOINT: server.url, FERRY_CODEC_AUTH: `Bearer ${token}` }, 'start', ...REQUEST, '--dest', 'consumer/inbox', '--process-id', 'remote-1', '--address', address);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const input = (await env.client.workflow.getHandle('transfer-consumer-remote-1').fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
      expect(Buffer.from(input.metadata!['encryption-key-id']!).toString()).toBe('cli-test');
      await env.client.workflow.getHandle('transfer-consumer-remote-1').terminate('test cleanup');

      const wrong = await ferryWith({}, 'start', ...REQUEST, '--dest', 'consumer/inbox', '--process-id', 'remote-2', '--address', address, '--codec-endpoint', server.url, '--codec-auth', 'Bearer nope');
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/codec server http:\/\/127\.0\.0\.1:\d+ answered 401 to encode/);
      expect(wrong.stderr).not.toContain(token);
      noStackTrace(wrong.stderr);
      await expect(env.client.workflow.getHandle('transfer-consumer-remote-2').describe()).rejects.toThrow(/not found/i);
    } finally {
      await server.close();
    }
  });

  it('keygen prints a key entry that parses as a ring', async () => {
    const run = await ferryWith({}, 'keygen', '--id', 'k-2025');
    expect(run.code).toBe(0);
    const ring = Keyring.parse(run.stdout, 'keygen output');
    expect(ring.ids).toEqual(['k-2025']);
    const other = await ferryWith({}, 'keygen');
    expect(Keyring.parse(other.stdout, 'keygen output').primary.key.equals(ring.primary.key)).toBe(false);
  });

  it('an unknown command prints the usage and exits 2', async () => {
    const run = await ferry('frobnicate');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown command "frobnicate"');
    expect(run.stderr).toMatch(/Usage: ferry <command>/);
    noStackTrace(run.stderr);
  });

  it('a missing argument is a usage error (exit 2), not a stack trace', async () => {
    const run = await ferry('status', 'consumer', '--address', address);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('needs CONNECTOR and PROCESS_ID');
    noStackTrace(run.stderr);
  });
});
