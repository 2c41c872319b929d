import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, prerequisites, startTemporalCluster, type TemporalCluster } from '../../scripts/cluster/cluster.js';
import { FerryClient } from '../../src/client.js';
import { property } from '../../src/DataAddress.js';
import { Keyring } from '../../src/keys.js';
import { makeAsset, sha256File } from '../support/transfers.js';
import { killWorkers, startWorker, type WorkerProcess } from './workers.js';

/**
 * ferry on a real multi-service Temporal server (PostgreSQL 15, four server processes, mTLS for
 * every connection): two connectors, each a control-plane and a data-plane worker process that
 * reach the server through Temporal's TEMPORAL_* variables only. The namespace and its search
 * attributes come from `ferry namespace setup`. A transfer matrix: push, pull, suspend/resume,
 * terminate, and a data-plane deploy (SIGTERM drain) in the middle of a push.
 */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NAMESPACE = 'ferry';
/**
 * 24 s for the large push, which steer-1, stop-1 and deploy-1 act on in flight through CLI processes
 * (each a node + tsx start): at 4 MiB/s its 6 s were a margin a loaded machine could use up, the
 * push completing before the suspend, terminate or SIGTERM.
 */
const RATE = 1024 * 1024;

let cluster: TemporalCluster;
let dir: string;
let env: NodeJS.ProcessEnv;
let ferry: FerryClient & { close(): Promise<void> };
const codecKeys = Keyring.generate('cluster-codec');
const edrKeys = Keyring.generate('provider-dp-edr');
const workers: Record<string, WorkerProcess> = {};
let providerDpConfig: string;
let metricsPort: number;
let assets: Record<'small' | 'large', { file: string; sha256: string }>;

function ferryCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'worker', 'cli.ts'), ...args], { cwd: REPO_ROOT, env, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

const keyFile = (name: string, ring: Keyring) => {
  const file = path.join(dir, name);
  writeFileSync(file, ring.serialize(), { mode: 0o600 });
  return file;
};

const json = (file: string, value: unknown) => {
  writeFileSync(file, JSON.stringify(value, null, 2));
  return file;
};

async function startProviderDp(): Promise<WorkerProcess> {
  workers.providerDp = await startWorker('dataPlaneWorker', ['--config', providerDpConfig], {
    ...env,
    FERRY_EDR_KEYS_FILE: keyFile('provider-dp.edr.keys', edrKeys),
    FERRY_WORKER__METRICS_BIND_ADDRESS: `127.0.0.1:${metricsPort}`,
  });
  return workers.providerDp;
}

const pre = await prerequisites();
if (!pre.ok) console.warn(`SKIPPED the multi-service cluster tests: missing ${pre.missing.join('; ')}`);

beforeAll(async () => {
  if (!pre.ok) return;
  cluster = await startTemporalCluster({ log: (l) => console.log(`[cluster] ${l}`), keepDir: !!process.env.FERRY_CLUSTER_KEEP });
  dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-cluster-test-'));
  env = {
    ...process.env,
    ...cluster.clientEnv,
    TEMPORAL_NAMESPACE: NAMESPACE,
    // keys from the environment, never the config files
    FERRY_CODEC_KEYS: codecKeys.serialize(),
    HOME: dir,
    XDG_CONFIG_HOME: dir,
  };
  delete env.TEMPORAL_PROFILE;
  delete env.TEMPORAL_CONFIG_FILE;

  const setup = await ferryCli('namespace', 'setup');
  expect(setup.code, setup.stderr).toBe(0);
  expect(setup.stdout).toContain(`namespace ${NAMESPACE} ready: created`);

  const fileRoot = path.join(dir, 'files');
  mkdirSync(fileRoot, { recursive: true });
  metricsPort = await freePort();
  assets = {
    small: makeAsset(fileRoot, 'provider/assets/small.bin', 1024 * 1024 + 7),
    large: makeAsset(fileRoot, 'provider/assets/large.bin', 24 * 1024 * 1024 + 3),
  };
  const dataPlanes = (id: string) => [{ id, transferTypes: ['File-PUSH', 'HttpData-PULL'] }];
  const cp = (connectorId: string, extra: Record<string, unknown> = {}) => json(path.join(dir, `${connectorId}-cp.json`), { connectorId, dataPlanes: dataPlanes(`${connectorId}-dp`), ...extra });
  providerDpConfig = json(path.join(dir, 'provider-dp.json'), {
    instanceId: 'provider-dp',
    fileRoot,
    provisioners: [],
    publicApi: { host: '127.0.0.1', port: 0 },
    rateLimitBytesPerSec: RATE,
    worker: { shutdownGraceTime: '1s' },
  });
  const consumerCp = cp('consumer');
  const providerCp = cp('provider', {
    assets: Object.fromEntries(Object.entries(assets).map(([id, a]) => [id, { endpointType: 'File', endpoint: a.file }])),
    // the agreements the consumer transfers under (a request under any other is refused)
    agreements: {
      'agreement-small': { assetId: 'small', counterparty: 'consumer' },
      'agreement-large': { assetId: 'large', counterparty: 'consumer' },
      'agreement-pull': { assetId: 'small', counterparty: 'consumer' },
    },
  });
  [workers.consumerCp, workers.providerCp, workers.consumerDp] = await Promise.all([
    startWorker('controlPlaneWorker', ['--config', consumerCp], env),
    startWorker('controlPlaneWorker', ['--config', providerCp], env),
    // this one from the environment alone: inline JSON plus one variable per setting
    startWorker('dataPlaneWorker', [], { ...env, FERRY_CONFIG_JSON: JSON.stringify({ provisioners: [{ kind: 'file-destination' }] }), FERRY_INSTANCE_ID: 'consumer-dp', FERRY_FILE_ROOT: fileRoot }),
  ]);
  await startProviderDp();
  ferry = await FerryClient.connect({ env });
}, 900_000);

afterAll(async () => {
  if (process.env.FERRY_CLUSTER_KEEP) for (const [name, w] of Object.entries(workers)) writeFileSync(path.join(cluster.dir, 'logs', `ferry-${name}.log`), w.lines.map((l) => JSON.stringify(l)).join('\n'));
  await ferry?.close();
  for (const w of Object.values(workers)) if (w.child.exitCode === null) w.child.kill('SIGTERM');
  await Promise.all(Object.values(workers).map((w) => w.exited));
  killWorkers();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

const push = (processId: string, asset: 'small' | 'large') => ({
  connectorId: 'consumer',
  processId,
  counterpartyAddress: 'temporal://provider',
  agreementId: `agreement-${asset}`,
  assetId: asset,
  transferType: 'File-PUSH' as const,
  dataDestination: { endpointType: 'File' as const, endpoint: `consumer/inbox/${processId}` },
});
async function deliveredSha(processId: string, asset: 'small' | 'large'): Promise<string> {
  const st = await ferry.status('consumer', processId);
  return sha256File(path.join(st.dataDestination!.endpoint, path.basename(assets[asset].file)));
}

describe.skipIf(!pre.ok)('ferry on a multi-service Temporal server with PostgreSQL and mTLS', () => {
  it('workers connected through TEMPORAL_* variables with client certificates and answer /readyz', async () => {
    for (const [name, w] of Object.entries(workers)) {
      // the worker's own line (the SDK may log a poll error, "…polling…", before it: under load, say)
      const polling = w.lines.find((l) => /^(control|data) plane \S+ polling /.test(String(l.msg)));
      expect(polling, `${name}: ${JSON.stringify(w.lines.map((l) => l.msg))}`).toBeDefined();
      expect(polling!.temporal, name).toBe(`${cluster.address} namespace ${NAMESPACE} (mTLS)`);
      const ready = await fetch(`${w.health}/readyz`);
      expect(ready.status, name).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', state: 'polling' });
      expect((await fetch(`${w.health}/healthz`)).status).toBe(200);
    }
    // no client certificate, no service: the server requires mTLS
    const plain = await ferryCli('transfer', 'list', '--tls-cert', '/dev/null', '--tls-key', '/dev/null');
    expect(plain.code).not.toBe(0);
  });

  it('a File push completes and the bytes arrive intact', async () => {
    await ferry.startTransfer(push('push-1', 'small'));
    expect(await ferry.result('consumer', 'push-1')).toMatchObject({ state: 'COMPLETED' });
    expect(await deliveredSha('push-1', 'small')).toBe(assets.small.sha256);
  });

  it('a pull hands out an EDR the consumer fetches with; completing it revokes the token', async () => {
    await ferry.startTransfer({ connectorId: 'consumer', processId: 'pull-1', counterpartyAddress: 'temporal://provider', agreementId: 'agreement-pull', assetId: 'small', transferType: 'HttpData-PULL' });
    await ferry.waitForState('consumer', 'pull-1', ['STARTED'], 120_000);
    const edr = (await ferry.edr('consumer', 'pull-1'))!;
    const res = await fetch(edr.endpoint, { headers: { authorization: property(edr, 'authorization')! } });
    expect(res.status).toBe(200);
    expect(createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex')).toBe(assets.small.sha256);
    const completed = await ferryCli('complete', 'consumer', 'pull-1');
    expect(completed.code, completed.stderr).toBe(0);
    expect(await ferry.result('consumer', 'pull-1')).toMatchObject({ state: 'COMPLETED' });
    // the provider revokes the token in its release, after it took the consumer's completion: it may end after the consumer
    const providerPid = (await ferry.status('consumer', 'pull-1')).counterpartyPid!;
    expect(await ferry.result('provider', providerPid)).toMatchObject({ state: 'COMPLETED' });
    expect((await fetch(edr.endpoint, { headers: { authorization: property(edr, 'authorization')! } })).status).toBe(403);
  });

  it('suspend and resume from the CLI; the push completes intact', async () => {
    await ferry.startTransfer(push('steer-1', 'large'));
    await ferry.waitForState('consumer', 'steer-1', ['STARTED'], 120_000);
    const suspended = await ferryCli('suspend', 'consumer', 'steer-1', '--reason', 'cluster test');
    expect(suspended.code, suspended.stderr).toBe(0);
    await ferry.waitForState('consumer', 'steer-1', ['SUSPENDED'], 120_000);
    // visibility (PostgreSQL) trails the state: polled until it shows the suspension
    const listed = async () => JSON.parse((await ferryCli('transfer', 'list', '--state', 'SUSPENDED', '--json')).stdout).transfers.map((t: { processId: string }) => t.processId);
    await expect.poll(listed, { timeout: 60_000, interval: 500 }).toContain('steer-1');
    const resumed = await ferryCli('resume', 'consumer', 'steer-1');
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await ferry.result('consumer', 'steer-1')).toMatchObject({ state: 'COMPLETED' });
    expect(await deliveredSha('steer-1', 'large')).toBe(assets.large.sha256);
  });

  it('terminate from the CLI ends the transfer TERMINATED with the reason', async () => {
    await ferry.startTransfer(push('stop-1', 'large'));
    await ferry.waitForState('consumer', 'stop-1', ['STARTED'], 120_000);
    const terminated = await ferryCli('terminate', 'consumer', 'stop-1', '--reason', 'operator says stop');
    expect(terminated.code, terminated.stderr).toBe(0);
    const result = await ferry.result('consumer', 'stop-1');
    expect(result.state).toBe('TERMINATED');
    expect(result.reason).toContain('operator says stop');
  });

  it('a data-plane deploy in the middle of a push: SIGTERM drains, the copy resumes from its offset on the new worker', async () => {
    await ferry.startTransfer(push('deploy-1', 'large'));
    await ferry.waitForState('consumer', 'deploy-1', ['STARTED'], 120_000);
    // some bytes moved (the running transfer heartbeats its offset)
    await expect.poll(async () => (await ferry.show('consumer', 'deploy-1')).progress?.bytes ?? 0, { timeout: 60_000, interval: 200 }).toBeGreaterThan(0);

    const old = workers.providerDp!;
    old.child.kill('SIGTERM');
    expect(await old.exited).toBe(0);
    expect(old.lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['draining: polling stopped, running activities get the grace time', 'stopped']));
    const during = await ferry.show('consumer', 'deploy-1');
    const transfer = during.pendingActivities.find((a) => a.activityType === 'transfer')!;
    const offset = (transfer.heartbeat as { offset: number }).offset;
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(24 * 1024 * 1024);

    const next = await startProviderDp();
    expect(await ferry.result('consumer', 'deploy-1')).toMatchObject({ state: 'COMPLETED' });
    expect(await deliveredSha('deploy-1', 'large')).toBe(assets.large.sha256);
    // the new worker moved only what was left: it resumed from the heartbeated offset
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    mkdirSync(path.join(REPO_ROOT, 'test-output'), { recursive: true });
    writeFileSync(path.join(REPO_ROOT, 'test-output', 'cluster-data-plane-metrics.txt'), metrics);
    const moved = [...metrics.matchAll(/^ferry_bytes_moved\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThanOrEqual(24 * 1024 * 1024 + 3 - offset);
    expect(metrics).toMatch(/^ferry_activity_retries\{[^}]*activityType="transfer"[^}]*\} 1$/m);
    // the SDK's own metrics on the same endpoint
    expect(metrics).toMatch(/^temporal_activity_execution_latency_bucket\{/m);
    expect(next.lines.some((l) => String(l.msg).includes('polling'))).toBe(true);
  });

  it('lists by agreement and asset through PostgreSQL visibility', async () => {
    const run = await ferryCli('transfer', 'list', '--agreement', 'agreement-large', '--asset', 'large', '--role', 'CONSUMER', '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).transfers.map((t: { processId: string }) => t.processId).sort()).toEqual(['deploy-1', 'steer-1', 'stop-1']);
  });

  it('logs are JSON lines with ids, no stack traces', () => {
    for (const w of Object.values(workers)) for (const l of w.lines) expect(JSON.stringify(l)).not.toMatch(/\\n\s+at /);
  });
});
