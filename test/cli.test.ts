import { execFile, spawn } from 'node:child_process';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inClusterAddress } from '../src/ids.js';
import { EncryptionCodec } from '../src/codec.js';
import { Keyring } from '../src/keys.js';
import { startCodecServer } from '../worker/codecServer.js';
import { startCluster, type Cluster } from './support/cluster.js';

/** The `ferry` CLI as users run it: a real child process against a real dev server with real workers. */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(REPO_ROOT, 'worker', 'cli.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let cluster: Cluster;
let address: string;
let dataDir: string;

/** The CLI's environment: the connector's payload codec keys (FERRY_CODEC_KEYS) unless `extra` says otherwise. */
function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_DATA_DIR: dataDir, FERRY_CODEC_KEYS: cluster.codecKeys.serialize(), ...extra };
  for (const k of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'TEMPORAL_PROFILE', 'TEMPORAL_CONFIG_FILE', 'FERRY_DEBUG', 'FERRY_UI_URL', 'FERRY_CODEC_KEYS_FILE']) if (!(k in extra)) delete env[k];
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete env[k];
  // no temporal.toml of the machine's user may leak into the tests
  env.HOME = dataDir;
  env.XDG_CONFIG_HOME = dataDir;
  return env;
}

function ferry(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: REPO_ROOT, env: cliEnv(extraEnv), timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
/** ferry with `--address` of the test cluster. */
const at = (...args: string[]) => ferry([...args, '--address', address]);
const json = <T = Record<string, unknown>>(run: Run): T => JSON.parse(run.stdout) as T;

/** The transfers' workflows (each connector's watchdog runs all along). */
async function workflowIds(): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of cluster.client.workflow.list()) if (!wf.workflowId.startsWith('watchdog-')) ids.push(wf.workflowId);
  return ids;
}

const noStackTrace = (text: string) => expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

const REQUEST = ['--connector', 'consumer', '--counterparty', 'temporal://provider', '--agreement', 'agreement-1', '--asset', 'asset-1', '--type', 'File-PUSH'];

// -----------------------------------------------------------------------------------------------
// An HTTP source that sends the first part of its body and then holds until released: a push
// that stays STARTED (with bytes moved) exactly as long as the test wants.

const HEAD_BYTES = 5 * 1024 * 1024;
const TAIL_BYTES = 1024 * 1024;
let source: Server;
let sink: Server;
const held = new Map<string, ServerResponse[]>();
const waitingFor = new Map<string, () => void>();
const delivered = new Map<string, number>();

function release(key: string): void {
  for (const res of held.get(key) ?? []) res.end(Buffer.alloc(TAIL_BYTES, 2));
  held.delete(key);
}

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

/** Resolves once the source has sent its first part for `key`. */
function headSent(key: string): Promise<void> {
  if (held.get(key)?.length) return Promise.resolve();
  return new Promise((resolve) => waitingFor.set(key, resolve));
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'ferry-cli-test-'));
  cluster = await startCluster();
  address = cluster.temporal.address;
  source = createServer((req, res) => {
    const key = (req.url ?? '/').slice(1);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': HEAD_BYTES + TAIL_BYTES });
    res.write(Buffer.alloc(HEAD_BYTES, 1), () => {
      held.set(key, [...(held.get(key) ?? []), res]);
      waitingFor.get(key)?.();
    });
  });
  sink = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    // a push cut short (suspended, terminated) aborts its request: only complete bodies count
    req.on('error', () => undefined);
    req.on('end', () => {
      delivered.set((req.url ?? '/').slice(1), bytes);
      res.writeHead(204).end();
    });
  });
  const sourceUrl = await listen(source);
  await listen(sink);
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['HttpData-PUSH', 'File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: path.join(cluster.root, 'consumer'), provisioners: [] }),
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['HttpData-PUSH', 'File-PUSH'] }],
      assets: {
        'held-follow': { endpointType: 'HttpData', endpoint: `${sourceUrl}/follow` },
        'held-steer': { endpointType: 'HttpData', endpoint: `${sourceUrl}/steer` },
      },
      agreements: {
        'agreement-held-follow': { assetId: 'held-follow', counterparty: 'consumer' },
        'agreement-held-steer': { assetId: 'held-steer', counterparty: 'consumer' },
      },
    }),
    // the source and the sink are on loopback: allowed explicitly (the default network policy refuses it)
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: path.join(cluster.root, 'provider'), provisioners: [], allowedNetworks: ['127.0.0.0/8'] }),
  ]);
}, 180_000);

afterAll(async () => {
  for (const key of [...held.keys()]) release(key);
  source?.closeAllConnections();
  source?.close();
  sink?.close();
  await cluster?.shutdown();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const sinkUrl = () => `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
const heldRequest = (asset: string, processId: string) => [
  'transfer',
  'start',
  '--connector',
  'consumer',
  '--counterparty',
  inClusterAddress('provider'),
  '--agreement',
  `agreement-${asset}`,
  '--asset',
  asset,
  '--type',
  'HttpData-PUSH',
  '--dest-json',
  JSON.stringify({ endpointType: 'HttpData', endpoint: `${sinkUrl()}/${processId}`, endpointProperties: [] }),
  '--process-id',
  processId,
];

describe('ferry CLI: usage', () => {
  it('--help prints the usage and exits 0, on every command', async () => {
    const top = await ferry(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Usage: ferry \[options\] \[command\]/);
    for (const command of ['start', 'status', 'suspend', 'resume', 'terminate', 'complete', 'approve', 'edr', 'wait', 'keygen', 'transfer', 'namespace']) expect(top.stdout).toContain(command);
    expect(top.stdout).toContain('Exit codes: 0 ok; 1 failed');

    const start = await ferry(['start', '--help']);
    expect(start.code).toBe(0);
    expect(start.stdout).toContain('--dest <path>');
    expect(start.stdout).toContain('--codec-keys-file');

    for (const sub of ['list', 'show', 'follow']) {
      const help = await ferry(['transfer', sub, '--help']);
      expect(help.code, sub).toBe(0);
      expect(help.stdout, sub).toContain(`Usage: ferry transfer ${sub}`);
      expect(help.stdout, sub).toContain('--address <host:port>');
    }
  });

  it('refuses an escaping --dest with exit 2 and starts nothing', async () => {
    const run = await at('start', ...REQUEST, '--dest', '../../etc', '--process-id', 'escape-1');
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('invalid transfer request');
    expect(run.stderr).toContain(`File endpoint "../../etc" must be a relative path inside the data plane's file root`);
    noStackTrace(run.stderr);

    expect(await workflowIds()).toEqual([]);
    await expect(cluster.client.workflow.getHandle('transfer-consumer-escape-1').describe()).rejects.toThrow(/not found/i);
  });

  it('a pull takes no --dest: one given is refused (exit 2, nothing started)', async () => {
    const pull = REQUEST.map((a) => (a === 'File-PUSH' ? 'HttpData-PULL' : a));
    const refused = await at('start', ...pull, '--dest', 'consumer/inbox', '--process-id', 'pull-dest');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('HttpData-PULL takes no dataDestination');
    await expect(cluster.client.workflow.getHandle('transfer-consumer-pull-dest').describe()).rejects.toThrow(/not found/i);
  });

  it('without codec keys (or with a bad key file) a command that reads or writes payloads is a usage error and starts nothing; list needs none', async () => {
    const noKeys = { FERRY_CODEC_KEYS: undefined };
    const none = await ferry(['start', ...REQUEST, '--dest', 'consumer/inbox', '--process-id', 'no-keys', '--address', address], noKeys);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no payload codec keys');
    expect(none.stderr).toContain('FERRY_CODEC_KEYS');
    noStackTrace(none.stderr);
    const edr = await ferry(['edr', 'consumer', 'pull-1', '--address', address], noKeys);
    expect(edr.code).toBe(2);
    expect(edr.stderr).toContain('--codec-keys-file');
    const bad = await ferry(['status', 'consumer', 'pull-1', '--address', address], { FERRY_CODEC_KEYS: 'k1:tooshort' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('invalid keys in FERRY_CODEC_KEYS: entry 1 (k1)');
    const missing = await ferry(['status', 'consumer', 'pull-1', '--address', address, '--codec-keys-file', path.join(dataDir, 'nope.keys')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read FERRY_CODEC_KEYS_FILE=.*nope\.keys/);
    await expect(cluster.client.workflow.getHandle('transfer-consumer-no-keys').describe()).rejects.toThrow(/not found/i);
    const listed = await ferry(['transfer', 'list', '--address', address], noKeys);
    expect(listed.code, listed.stderr).toBe(0);
  });

  it('global options go before the command too (--codec-keys-file FILE status …)', async () => {
    const file = path.join(dataDir, 'codec.keys');
    writeFileSync(file, cluster.codecKeys.serialize());
    const run = await ferry(['--codec-keys-file', file, '--address', address, 'status', 'consumer', 'nope-1', '--timeout', '2'], { FERRY_CODEC_KEYS: undefined });
    expect(run.stderr).toContain('no transfer nope-1 of connector consumer');
    expect(run.code).toBe(1);
  });

  it('with a codec server instead of keys (--codec-endpoint, --codec-auth): starts, encrypted under the server’s key; a wrong token is a clear failure', async () => {
    const token = 'cli-codec-token-0123456789abcdef';
    const server = await startCodecServer({ host: '127.0.0.1', port: 0, codec: new EncryptionCodec(cluster.codecKeys), tokens: [{ id: 'cli', token }], corsOrigins: [], log: () => undefined });
    try {
      const noKeys = { FERRY_CODEC_KEYS: undefined };
      const run = await ferry(['start', ...REQUEST, '--dest', 'consumer/inbox', '--process-id', 'remote-1', '--address', address], { ...noKeys, FERRY_CODEC_ENDPOINT: server.url, FERRY_CODEC_AUTH: `Bearer ${token}` });
      expect(run.code, run.stderr).toBe(0);
      const input = (await cluster.client.workflow.getHandle('transfer-consumer-remote-1').fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
      expect(Buffer.from(input.metadata!['encryption-key-id']!).toString()).toBe(cluster.codecKeys.ids[0]);
      // (no provider offers asset-1: the transfer may well have ended by itself already)
      await cluster.client.workflow.getHandle('transfer-consumer-remote-1').terminate('test cleanup').catch(() => undefined);

      const wrong = await ferry(['start', ...REQUEST, '--dest', 'consumer/inbox', '--process-id', 'remote-2', '--address', address, '--codec-endpoint', server.url, '--codec-auth', 'Bearer nope'], noKeys);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/codec server http:\/\/127\.0\.0\.1:\d+ answered 401 to encode/);
      expect(wrong.stderr).not.toContain(token);
      noStackTrace(wrong.stderr);
      await expect(cluster.client.workflow.getHandle('transfer-consumer-remote-2').describe()).rejects.toThrow(/not found/i);
    } finally {
      await server.close();
    }
  });

  it('keygen prints a key entry that parses as a ring', async () => {
    const run = await ferry(['keygen', '--id', 'k-2025']);
    expect(run.code).toBe(0);
    const ring = Keyring.parse(run.stdout, 'keygen output');
    expect(ring.ids).toEqual(['k-2025']);
    const other = await ferry(['keygen']);
    expect(Keyring.parse(other.stdout, 'keygen output').primary.key.equals(ring.primary.key)).toBe(false);
  });

  it('an unknown command prints the usage and exits 2', async () => {
    const run = await ferry(['frobnicate']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("unknown command 'frobnicate'");
    noStackTrace(run.stderr);
    const none = await ferry([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/Usage: ferry/);
  });

  it('a missing argument or a bad option value is a usage error (exit 2), not a stack trace', async () => {
    const run = await at('status', 'consumer');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("missing required argument 'processId'");
    noStackTrace(run.stderr);
    const role = await at('transfer', 'list', '--role', 'nobody');
    expect(role.code).toBe(2);
    expect(role.stderr).toContain('Allowed choices are CONSUMER, PROVIDER');
    const quote = await at('transfer', 'list', '--asset', 'a" OR 1=1');
    expect(quote.code).toBe(2);
    expect(quote.stderr).toContain('may not contain quotes');
  });

  it('an unreachable server is exit 1 with one line naming the address; --json adds a JSON error', async () => {
    const run = await ferry(['transfer', 'list', '--address', '127.0.0.1:1', '--json']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('cannot reach Temporal at 127.0.0.1:1 namespace default (plaintext)');
    expect(json(run)).toMatchObject({ ok: false, exitCode: 1 });
    noStackTrace(run.stderr);
  });
});

describe('ferry CLI: transfers with real workers', () => {
  it('start prints the state after the command and a Web UI link that follows the connection', async () => {
    const run = await at(...heldRequest('held-follow', 'follow-1'));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('transfer follow-1 started');
    expect(run.stdout, run.stdout).toMatch(/state now: [A-Z_]+/);
    const [host, port] = address.split(':');
    // no --ui: the dev server's convention, frontend port + 1000
    expect(run.stdout).toContain(`http://${host}:${Number(port) + 1000}/namespaces/default/workflows/transfer-consumer-follow-1`);
    expect(run.stdout).toContain('ferry transfer follow consumer follow-1');

    const description = await cluster.client.workflow.getHandle('transfer-consumer-follow-1').describe();
    expect(description.type).toBe('transferProcess');
    // the CLI encrypts what it sends: the stored input names the codec and the key, and hides the destination
    const input = (await cluster.client.workflow.getHandle('transfer-consumer-follow-1').fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    expect(Buffer.from(input.metadata!.encoding!).toString()).toBe('binary/encrypted');
    expect(Buffer.from(input.metadata!['encryption-key-id']!).toString()).toBe(cluster.codecKeys.ids[0]);
    expect(Buffer.from(input.data!).toString('latin1')).not.toContain(sinkUrl());
  });

  it('follow shows the bytes of the running transfer live, then ends with the final state (exit 0)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'transfer', 'follow', 'consumer', 'follow-1', '--address', address, '--interval', '0.2', '--json'], {
      cwd: REPO_ROOT,
      env: cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Record<string, unknown>[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const sawBytes = new Promise<void>((resolve) => {
      let buffered = '';
      child.stdout.on('data', (d: Buffer) => {
        buffered += d.toString();
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
          buffered = buffered.slice(nl + 1);
          lines.push(line);
          if (typeof line.bytes === 'number' && line.bytes > 0 && line.state === 'STARTED') resolve();
        }
      });
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await headSent('follow');
    await sawBytes;

    // meanwhile `show` reads the same progress from the running transfer activity's heartbeat
    const shown = await at('transfer', 'show', 'consumer', 'follow-1', '--json');
    expect(shown.code, shown.stderr).toBe(0);
    const details = json<{ status: { state: string }; progress: { bytes: number; from: string }; pendingActivities: { activityType: string }[]; url: string }>(shown);
    expect(details.status.state).toBe('STARTED');
    expect(details.progress.from).toBe('heartbeat');
    expect(details.progress.bytes).toBeGreaterThan(0);
    expect(details.progress.bytes).toBeLessThanOrEqual(HEAD_BYTES);
    expect(details.pendingActivities.map((a) => a.activityType)).toContain('transfer');
    const text = await at('transfer', 'show', 'consumer', 'follow-1');
    expect(text.stdout).toMatch(/bytes +\d+\.\d MiB +\(running transfer, last heartbeat of dataflow-provider-/);
    expect(text.stdout).toMatch(/pending activities:\n.*ACTIVITY[\s\S]*transfer/);

    release('follow');
    expect(await exited, stderr).toBe(0);
    const last = lines.at(-1)!;
    expect(last).toMatchObject({ state: 'COMPLETED', final: true });
    expect(last.bytes).toBe(HEAD_BYTES + TAIL_BYTES);
    const bytes = lines.map((l) => l.bytes).filter((b): b is number => typeof b === 'number');
    expect(bytes).toEqual([...bytes].sort((a, b) => a - b)); // never goes back
    expect(delivered.get('follow-1')).toBe(HEAD_BYTES + TAIL_BYTES);
  });

  it('list filters by state, role, counterparty, type, agreement and asset (visibility), as a table or JSON', async () => {
    const ids = async (...filters: string[]) => {
      const run = await at('transfer', 'list', '--json', ...filters);
      expect(run.code, run.stderr).toBe(0);
      return json<{ transfers: { processId: string; connectorId: string }[] }>(run).transfers.map((t) => `${t.connectorId}/${t.processId}`);
    };
    // visibility trails the workflow by a moment
    await expect.poll(() => ids('--state', 'COMPLETED', '--role', 'CONSUMER', '--agreement', 'agreement-held-follow'), { timeout: 60_000, interval: 250 }).toEqual(['consumer/follow-1']);
    expect(await ids('--state', 'COMPLETED', '--role', 'CONSUMER')).toContain('consumer/follow-1');
    expect(await ids('--agreement', 'agreement-held-follow', '--asset', 'held-follow', '--role', 'CONSUMER')).toEqual(['consumer/follow-1']);
    expect(await ids('--counterparty', 'temporal://provider', '--type', 'HttpData-PUSH')).toEqual(['consumer/follow-1']);
    expect(await ids('--connector', 'provider', '--agreement', 'agreement-held-follow')).toHaveLength(1);
    expect(await ids('--type', 'File-PUSH', '--agreement', 'agreement-held-follow')).toEqual([]);
    // follow-1's provider ends after its consumer, and its state reaches visibility after that: polled too
    await expect.poll(() => ids('--state', 'STARTED,SUSPENDED'), { timeout: 60_000, interval: 250 }).toEqual([]);

    const table = await at('transfer', 'list', '--role', 'consumer', '--show-query');
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('query: WorkflowType IN ("transferProcess", "transferProcessWorkflow") AND FerryTransferRole = "CONSUMER"');
    expect(table.stdout).toMatch(/CONNECTOR +PROCESS +ROLE +TYPE +STATE/);
    expect(table.stdout).toMatch(/consumer +follow-1 +CONSUMER +HttpData-PUSH +COMPLETED +temporal:\/\/provider +agreement-held-follow +held-follow/);
  });

  it('suspend, resume and terminate print the state after the command; a refused one exits 3; follow of a terminated transfer exits 1', async () => {
    expect((await at(...heldRequest('held-steer', 'steer-1'))).code).toBe(0);
    await headSent('steer');
    await cluster.ferry.waitForState('consumer', 'steer-1', ['STARTED']);

    const suspended = await at('suspend', 'consumer', 'steer-1', '--reason', 'maintenance window');
    expect(suspended.code, suspended.stderr).toBe(0);
    // the process accepts at once and acts on it next: the state it reports may still be STARTED
    expect(suspended.stdout).toMatch(/suspend accepted \(state [A-Z_]+\)\nstate now: [A-Z_]+/);
    await cluster.ferry.waitForState('consumer', 'steer-1', ['SUSPENDED']);
    const listed = async () => json<{ transfers: { processId: string }[] }>(await at('transfer', 'list', '--state', 'SUSPENDED', '--json')).transfers.map((t) => t.processId);
    await expect.poll(listed, { timeout: 60_000, interval: 250 }).toContain('steer-1');

    const resumed = await at('transfer', 'resume', 'consumer', 'steer-1', '--json');
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(json(resumed)).toMatchObject({ command: 'resume', accepted: true, processId: 'steer-1' });

    await headSent('steer');
    const terminated = await at('terminate', 'consumer', 'steer-1', '--reason', 'no longer needed');
    expect(terminated.code, terminated.stderr).toBe(0);
    expect(terminated.stdout).toMatch(/terminate accepted/);
    await cluster.ferry.waitForState('consumer', 'steer-1', ['TERMINATED']);

    const again = await at('terminate', 'consumer', 'steer-1');
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/refused: cannot terminate transfer process steer-1 in state TERMINATED/);

    const follow = await at('transfer', 'follow', 'consumer', 'steer-1');
    expect(follow.code).toBe(1);
    expect(follow.stdout).toContain('transfer steer-1 TERMINATED');
    const status = await at('status', 'consumer', 'steer-1');
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/state +TERMINATED/);
    expect(status.stdout).toContain('maintenance window');
  });

  it('an unknown transfer is exit 1 naming it', async () => {
    const run = await at('transfer', 'show', 'consumer', 'nope');
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('no transfer nope of connector consumer in namespace default');
  });
});

describe('ferry CLI: connections in Temporal conventions', () => {
  it('reads TEMPORAL_ADDRESS, and a temporal.toml profile; FERRY_UI_URL and --ui set the links', async () => {
    const fromEnv = await ferry(['transfer', 'list', '--json'], { TEMPORAL_ADDRESS: address });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);

    const toml = path.join(dataDir, 'temporal.toml');
    writeFileSync(toml, `[profile.other]\naddress = "${address}"\nnamespace = "default"\n`);
    const fromProfile = await ferry(['transfer', 'show', 'consumer', 'follow-1', '--env-file', toml, '--profile', 'other', '--json'], { FERRY_UI_URL: 'https://ui.example/' });
    expect(fromProfile.code, fromProfile.stderr).toBe(0);
    expect(json(fromProfile).url).toBe('https://ui.example/namespaces/default/workflows/transfer-consumer-follow-1');

    const viaFlag = await ferry(['transfer', 'show', 'consumer', 'follow-1', '--json', '--ui', 'http://ui.flag:1234'], { TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'other' });
    expect(json(viaFlag).url).toBe('http://ui.flag:1234/namespaces/default/workflows/transfer-consumer-follow-1');

    const missing = await ferry(['transfer', 'list', '--env-file', toml, '--profile', 'absent']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("Profile 'absent' not found");
  });

  it('namespace setup creates a namespace with ferry\'s search attributes, idempotently', async () => {
    const first = await ferry(['namespace', 'setup', '--namespace', 'ops-setup', '--address', address, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(json(first)).toMatchObject({ namespace: 'ops-setup', created: true });
    expect(json<{ searchAttributesAdded: string[] }>(first).searchAttributesAdded).toEqual(expect.arrayContaining(['FerryTransferState', 'FerryAgreement', 'FerryAsset']));
    const second = await ferry(['namespace', 'setup', '--namespace', 'ops-setup', '--address', address]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('namespace ops-setup ready: existed; search attributes all present');
    const listed = await ferry(['transfer', 'list', '--namespace', 'ops-setup', '--agreement', 'x', '--address', address]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('no transfers match');
  });
});
