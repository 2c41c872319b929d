import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { FerryClient } from '../../src/client.js';
import { DataFlowStateAttr } from '../../src/DataFlow.js';
import { dataFlowWorkflowId, TRANSFER_PROCESS_WORKFLOW, transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor } from '../../src/processStart.js';
import { ferryDataConverter } from '../../src/codec.js';
import { Keyring } from '../../src/keys.js';
import { TransferStateAttr } from '../../src/TransferProcess.js';
import { resolveTemporalCli } from '../../worker/temporalCli.js';
import { SEARCH_ATTRIBUTES } from '../../worker/devServer.js';
import { freePort } from '../support/cluster.js';
import { children, spawnWorker } from '../support/processes.js';
import { sha256File } from '../support/transfers.js';
import { startDrillProvisioner, startHttpSource, startResumableSink, startTcpProxy, type DrillProvisioner, type ResumableSink, type TcpProxy } from './services.js';

/**
 * The drill's world: a Temporal dev server process on a SQLite file (stopped and started again on
 * the same database), two connectors as four worker processes (consumer and provider, each a
 * control plane and a data plane) talking DSP over loopback through TCP proxies that can go down,
 * a provisioning service per side, an HTTP source and a resumable HTTP sink.
 */

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** The timers and budgets of the drill's connectors: short enough for a drill, the rest default. */
export const DRILL_TRANSFER_SETTINGS = {
  requestedTimeout: '3m',
  staleRetries: 2,
  callbackRetries: 2,
  activityMaxAttempts: 10,
  retryInitialInterval: '1s',
  retryMaximumInterval: '4s',
  // 200 starts, suspensions or resumes at once on a loaded 2-core machine can keep answers past a
  // minute (the default is an hour); the DSP outage drills give their requests DSP_BUDGET_MS each
  counterpartyRetryBudget: '5m',
};
/** The connector watchdog, sooner than by default, so a lost data plane or counterparty ends a transfer within the drill. */
export const DRILL_WATCHDOG = { interval: '30s', lostAfter: '2m' };
/** How long a counterparty may be away before the requests of the DSP outage drills give up (their per-transfer `counterpartyRetryBudget`). */
export const DSP_BUDGET_MS = 60_000;
// deprovisioning held by the drill (until every flow of the batch is there and the worker was killed) must outlast the hold
export const DRILL_DATAFLOW_SETTINGS = { provisionTimeout: '45s', deprovisionTimeout: '5m' };
/** Each push is capped so a slow asset is still moving when the drill strikes. */
export const PUSH_RATE = 256 * KiB;

export type WorkerName = 'consumerCp' | 'consumerDp' | 'providerCp' | 'providerDp';
export type TransferKind = 'file-small' | 'file-slow' | 'http';
/** The provider's asset and agreement each kind transfers. */
const KIND_ASSET: Record<TransferKind, { assetId: string; agreementId: string }> = {
  'file-small': { assetId: 'small', agreementId: 'agr-small' },
  'file-slow': { assetId: 'slow', agreementId: 'agr-slow' },
  http: { assetId: 'http', agreementId: 'agr-http' },
};
export const FINAL_PROCESS_STATES = ['COMPLETED', 'TERMINATED'];

export interface Asset {
  size: number;
  sha256: string;
}

export interface Transfer {
  kind: TransferKind;
  pid: string;
  ppid: string;
  /** File kinds: the directory the consumer names (the provisioner makes svc-<pid> in it). */
  destDir?: string;
  /** HttpData: the sink path. */
  sinkPath?: string;
}

/** A `temporal server start-dev` process of our own, so it can be stopped and started again on its database. */
export class TemporalServer {
  child: ChildProcess | undefined;
  constructor(
    readonly dbFile: string,
    readonly port: number,
    readonly namespaces: string[],
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const cli = resolveTemporalCli();
    if (cli.type !== 'existing-path') throw new Error('the drill needs the Temporal CLI: run npm run setup');
    const args = ['server', 'start-dev', '--db-filename', this.dbFile, '--port', String(this.port), '--ip', '127.0.0.1', '--headless', '--log-level', 'error'];
    for (const ns of this.namespaces) args.push('--namespace', ns);
    for (const sa of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${sa.name}=Keyword`);
    const child = spawn(cli.path, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the Temporal dev server exited (${child.exitCode}): ${err}`);
      try {
        const conn = await Connection.connect({ address: this.address, connectTimeout: 2_000 });
        await conn.workflowService.getSystemInfo({});
        await conn.close();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`the Temporal dev server did not answer within 120 s: ${err}`);
        await sleep(250);
      }
    }
  }

  /** Stops it as an operator would (SIGTERM), SIGKILL if it does not go within 30 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
}

export interface HarnessOptions {
  root: string;
  log: (line: string) => void;
}

export class Harness {
  readonly files: string;
  server!: TemporalServer;
  consumer!: FerryClient;
  consumerClient!: Client;
  providerClient!: Client;
  services!: { consumer: DrillProvisioner; provider: DrillProvisioner };
  proxies!: { consumer: TcpProxy; provider: TcpProxy };
  sink!: ResumableSink;
  assets!: Record<TransferKind, Asset>;
  providerDspUrl = '';
  readonly workers = new Map<WorkerName, ChildProcess>();
  readonly configFiles = new Map<WorkerName, string>();
  /** The keys each worker process gets in its environment (kept across restarts). */
  readonly workerEnv = new Map<WorkerName, Record<string, string>>();
  #closers: (() => Promise<void>)[] = [];

  constructor(readonly opts: HarnessOptions) {
    this.files = path.join(opts.root, 'files');
  }

  log(line: string): void {
    this.opts.log(line);
  }

  async start(): Promise<void> {
    mkdirSync(this.files, { recursive: true });
    const [temporalPort, cDsp, pDsp, cProxy, pProxy, cCb, pCb] = await Promise.all(Array.from({ length: 7 }, () => freePort()));
    this.server = new TemporalServer(path.join(this.opts.root, 'temporal.db'), temporalPort!, ['org-a', 'org-b']);
    this.log(`starting the Temporal dev server on ${this.server.address} (SQLite ${this.server.dbFile})`);
    await this.server.start();
    this.#closers.push(() => this.server.stop());

    const connection = await Connection.connect({ address: this.server.address });
    this.#closers.push(() => connection.close());
    // each organisation's payload codec keys; each data plane's callback keys
    const codec = { consumer: Keyring.generate('drill-consumer'), provider: Keyring.generate('drill-provider') };
    const env = (org: 'consumer' | 'provider', dataPlane: boolean) => ({
      FERRY_CODEC_KEYS: codec[org].serialize(),
      ...(dataPlane ? { FERRY_CALLBACK_KEYS: Keyring.generate(`drill-${org}-callback`).serialize() } : {}),
    });
    this.workerEnv.set('consumerCp', env('consumer', false));
    this.workerEnv.set('consumerDp', env('consumer', true));
    this.workerEnv.set('providerCp', env('provider', false));
    this.workerEnv.set('providerDp', env('provider', true));
    this.consumerClient = new Client({ connection, namespace: 'org-a', dataConverter: ferryDataConverter(codec.consumer) });
    this.providerClient = new Client({ connection, namespace: 'org-b', dataConverter: ferryDataConverter(codec.provider) });
    this.consumer = new FerryClient(this.consumerClient);

    const small = randomBytes(256 * KiB);
    // still moving minutes after a batch of 200 started (2 minutes at PUSH_RATE), so a strike or a
    // suspend finds it running even on a loaded machine (8 MiB pushes at 200 completed before suspends landed)
    const slow = randomBytes(32 * MiB);
    const http = randomBytes(1 * MiB);
    mkdirSync(path.join(this.files, 'assets'), { recursive: true });
    writeFileSync(path.join(this.files, 'assets', 'small.bin'), small);
    writeFileSync(path.join(this.files, 'assets', 'slow.bin'), slow);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    this.assets = {
      'file-small': { size: small.length, sha256: sha(small) },
      'file-slow': { size: slow.length, sha256: sha(slow) },
      http: { size: http.length, sha256: sha(http) },
    };
    const source = await startHttpSource(http);
    this.sink = await startResumableSink();
    this.services = { consumer: await startDrillProvisioner({ fileRoot: this.files }), provider: await startDrillProvisioner({ fileRoot: this.files }) };
    this.proxies = { consumer: await startTcpProxy(cProxy!, cDsp!), provider: await startTcpProxy(pProxy!, pDsp!) };
    this.#closers.push(source.close, this.sink.close, this.services.consumer.close, this.services.provider.close, this.proxies.consumer.close, this.proxies.provider.close);

    const consumerUrl = `http://127.0.0.1:${cProxy}/dsp`;
    this.providerDspUrl = `http://127.0.0.1:${pProxy}/dsp`;
    const tokens = { c2p: 'drill-consumer-to-provider', p2c: 'drill-provider-to-consumer' };
    const types = ['File-PUSH', 'HttpData-PUSH'];
    const temporal = (namespace: string) => ({ address: this.server.address, namespace });
    const write = (name: WorkerName, config: unknown) => {
      const file = path.join(this.opts.root, `${name}.json`);
      writeFileSync(file, JSON.stringify(config, null, 2));
      this.configFiles.set(name, file);
    };
    write('consumerCp', {
      connectorId: 'consumer',
      temporal: temporal('org-a'),
      dataPlanes: [{ id: 'consumer-dp', transferTypes: types }],
      transfer: DRILL_TRANSFER_SETTINGS,
      watchdog: DRILL_WATCHDOG,
      dsp: { host: '127.0.0.1', port: cDsp, publicUrl: consumerUrl, counterparties: [{ id: 'provider', address: this.providerDspUrl, inboundToken: tokens.p2c, outboundToken: tokens.c2p }] },
    });
    write('consumerDp', {
      instanceId: 'consumer-dp',
      temporal: temporal('org-a'),
      fileRoot: this.files,
      callback: { host: '127.0.0.1', port: cCb },
      allowedNetworks: ['127.0.0.0/8'],
      provisioners: [{ kind: 'http', name: 'svc-c', url: this.services.consumer.url, side: 'destination', endpointTypes: ['File'] }],
      dataFlow: DRILL_DATAFLOW_SETTINGS,
    });
    write('providerCp', {
      connectorId: 'provider',
      temporal: temporal('org-b'),
      dataPlanes: [{ id: 'provider-dp', transferTypes: types }],
      transfer: DRILL_TRANSFER_SETTINGS,
      watchdog: DRILL_WATCHDOG,
      assets: {
        small: { endpointType: 'File', endpoint: 'assets/small.bin' },
        slow: { endpointType: 'File', endpoint: 'assets/slow.bin' },
        http: { endpointType: 'HttpData', endpoint: `${source.url}/asset` },
      },
      dsp: {
        host: '127.0.0.1',
        port: pDsp,
        publicUrl: this.providerDspUrl,
        counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: tokens.c2p, outboundToken: tokens.p2c }],
      },
      agreements: {
        'agr-small': { assetId: 'small', counterparty: 'consumer' },
        'agr-slow': { assetId: 'slow', counterparty: 'consumer' },
        'agr-http': { assetId: 'http', counterparty: 'consumer' },
      },
    });
    write('providerDp', {
      instanceId: 'provider-dp',
      temporal: temporal('org-b'),
      fileRoot: this.files,
      callback: { host: '127.0.0.1', port: pCb },
      allowedNetworks: ['127.0.0.0/8'], // the drill's HTTP source and sink are on loopback
      provisioners: [{ kind: 'http', name: 'svc-p', url: this.services.provider.url, side: 'source', endpointTypes: ['HttpData'] }],
      allowedHttpDestinations: [this.sink.url],
      rateLimitBytesPerSec: PUSH_RATE,
      dataFlow: DRILL_DATAFLOW_SETTINGS,
    });
    this.log('starting four worker processes');
    await Promise.all((['consumerCp', 'consumerDp', 'providerCp', 'providerDp'] as const).map((w) => this.startWorker(w)));
  }

  async startWorker(name: WorkerName): Promise<void> {
    const entry = name.endsWith('Cp') ? 'controlPlaneWorker' : 'dataPlaneWorker';
    const child = await spawnWorker(entry, this.configFiles.get(name)!, { env: this.workerEnv.get(name)!, timeoutMs: 300_000 });
    this.workers.set(name, child);
  }

  /** SIGKILL: no shutdown, no drain, no goodbye. */
  async kill(name: WorkerName): Promise<void> {
    const child = this.workers.get(name);
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  async close(): Promise<void> {
    for (const child of children) child.kill('SIGKILL');
    for (const close of this.#closers.reverse()) await close().catch(() => undefined);
  }

  /** Starts `n` transfers of `kind`, ids `<prefix>-<i>`, at most 20 starts at a time. */
  async startBatch(prefix: string, n: number, kind: TransferKind, settings?: { counterpartyRetryBudget: string }): Promise<Transfer[]> {
    const batch: Transfer[] = Array.from({ length: n }, (_, i) => {
      const pid = `${prefix}-${i}`;
      return {
        kind,
        pid,
        ppid: providerPidFor('consumer', pid),
        ...(kind === 'http' ? { sinkPath: `/in/${pid}` } : { destDir: path.join('drill', prefix) }),
      };
    });
    await pool(batch, 20, async (t) => {
      await this.consumer.startTransfer({
        processId: t.pid,
        connectorId: 'consumer',
        ...(settings ? { settings } : {}),
        counterpartyAddress: this.providerDspUrl,
        ...KIND_ASSET[kind],
        transferType: kind === 'http' ? 'HttpData-PUSH' : 'File-PUSH',
        dataDestination:
          kind === 'http'
            ? { endpointType: 'HttpData', endpoint: `${this.sink.url}${t.sinkPath}`, endpointProperties: [{ name: 'method', value: 'PUT' }] }
            : { endpointType: 'File', endpoint: t.destDir!, endpointProperties: [] },
      });
    });
    return batch;
  }

  /** Consumer TransferProcess states of a batch, from visibility (eventually consistent). */
  async consumerStates(prefix: string): Promise<Map<string, string>> {
    const states = new Map<string, string>();
    const query = `WorkflowType = '${TRANSFER_PROCESS_WORKFLOW}' AND WorkflowId STARTS_WITH '${transferProcessWorkflowId('consumer', `${prefix}-`)}'`;
    for await (const wf of this.consumerClient.workflow.list({ query })) {
      const state = wf.typedSearchAttributes.get(TransferStateAttr) ?? 'unknown';
      states.set(wf.workflowId.slice(transferProcessWorkflowId('consumer', '').length), state);
    }
    return states;
  }

  /** How many workflows of `type` in a namespace, started since `since`, are in `state`. */
  async count(side: 'consumer' | 'provider', type: 'transferProcess' | 'dataFlow', state: string, since: Date): Promise<number> {
    const attr = type === 'dataFlow' ? DataFlowStateAttr.name : TransferStateAttr.name;
    const client = side === 'consumer' ? this.consumerClient : this.providerClient;
    const { count } = await client.workflow.count(`WorkflowType = '${type}' AND ${attr} = '${state}' AND StartTime >= '${since.toISOString()}'`);
    return count;
  }

  /** Polls `probe` until it returns true or `timeoutMs` passes; false on timeout. */
  async until(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let lastLog = 0;
    for (;;) {
      const ok = await probe().catch(() => false);
      if (ok) return true;
      if (Date.now() > deadline) return false;
      if (Date.now() - lastLog > 15_000) {
        lastLog = Date.now();
        this.log(`  waiting: ${what}`);
      }
      await sleep(1_000);
    }
  }

  /** The state and whether the workflow still runs; absent when it never started. */
  async describe(client: Client, workflowId: string): Promise<{ state?: string; running: boolean } | undefined> {
    try {
      const d = await client.workflow.getHandle(workflowId).describe();
      const state = d.typedSearchAttributes.get(TransferStateAttr) ?? d.typedSearchAttributes.get(DataFlowStateAttr);
      return { ...(state ? { state } : {}), running: d.status.name === 'RUNNING' };
    } catch (e) {
      if ((e as Error).name === 'WorkflowNotFoundError') return undefined;
      throw e;
    }
  }

  /** Why a transfer's processes ended as they did (their results), ids shortened so reasons group. */
  async reasons(t: Transfer): Promise<string> {
    const why = async (client: Client, id: string) => {
      try {
        const r = (await Promise.race([client.workflow.getHandle(id).result(), sleep(5_000).then(() => undefined)])) as { state?: string; reason?: string } | undefined;
        return r ? `${r.state}: ${r.reason ?? ''}` : 'running';
      } catch (e) {
        return (e as Error).name === 'WorkflowNotFoundError' ? 'absent' : `error: ${(e as Error).message}`;
      }
    };
    const [c, p] = await Promise.all([why(this.consumerClient, transferProcessWorkflowId('consumer', t.pid)), why(this.providerClient, transferProcessWorkflowId('provider', t.ppid))]);
    return `consumer ${c} / provider ${p}`.replace(/[0-9a-f]{8}(-?[0-9a-f]{4,})+/g, '…').replace(/\b\d+( \d+)*\b/g, 'N').slice(0, 300);
  }

  /** The four workflows of each transfer, once: states and whether any still runs. */
  async snapshot(batch: Transfer[]): Promise<TransferSnapshot[]> {
    return pool(batch, 16, async (t) => {
      const [consumer, provider, consumerFlow, providerFlow] = await Promise.all([
        this.describe(this.consumerClient, transferProcessWorkflowId('consumer', t.pid)),
        this.describe(this.providerClient, transferProcessWorkflowId('provider', t.ppid)),
        this.describe(this.consumerClient, dataFlowWorkflowId('consumer', t.pid)),
        this.describe(this.providerClient, dataFlowWorkflowId('provider', t.ppid)),
      ]);
      return { transfer: t, consumer, provider, consumerFlow, providerFlow, delivery: await this.delivery(t) };
    });
  }

  /** What reached the destination of a transfer: complete deliveries and whether they carry the asset's bytes. */
  async delivery(t: Transfer): Promise<{ count: number; intact: boolean }> {
    const asset = this.assets[t.kind];
    if (t.kind === 'http') {
      const d = this.sink.deliveries(t.sinkPath!, asset.size);
      return { count: d.count, intact: d.count > 0 && d.sha256 === asset.sha256 };
    }
    const dir = path.join(this.files, t.destDir!, `svc-${t.pid}`);
    const files = await deliveredFiles(dir);
    const shas = await Promise.all(files.map(sha256File));
    return { count: files.length, intact: files.length > 0 && shas.every((s) => s === asset.sha256) };
  }
}

export interface TransferSnapshot {
  transfer: Transfer;
  consumer?: { state?: string; running: boolean };
  provider?: { state?: string; running: boolean };
  consumerFlow?: { state?: string; running: boolean };
  providerFlow?: { state?: string; running: boolean };
  delivery: { count: number; intact: boolean };
}

/** Files a flow delivered under `dir`: regular files, not ferry's bookkeeping, not partial. */
async function deliveredFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && !e.name.startsWith('.') && !e.name.endsWith('.part')) out.push(p);
    }
  };
  if (await stat(dir).then(() => true, () => false)) await walk(dir);
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!);
      }
    }),
  );
  return results;
}
