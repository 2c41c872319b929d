import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { z } from 'zod';
import { FerryClient } from '../src/client.js';
import { ferryDataConverter } from '../src/codec.js';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../src/config.js';
import { dataFlowWorkflowId, inClusterAddress, transferProcessWorkflowId } from '../src/ids.js';
import { Keyring } from '../src/keys.js';
import { providerPidFor } from '../src/processStart.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../worker/bundle.js';
import { startControlPlaneWorker } from '../worker/controlPlaneWorker.js';
import { startDataPlaneWorker } from '../worker/dataPlaneWorker.js';
import { demoConfigs, DEMO_AGREEMENT, DEMO_ASSET, ensureDemoAsset } from '../worker/demo.js';
import { startDevServer } from '../worker/devServer.js';
import { freePort } from '../test/support/cluster.js';
import * as baselineActivities from './baseline/activities.js';
import { probeTransfer, type TransferHistories } from './history.js';

/**
 * The Temporal side of `npm run bench`, started on first use and shared by the goals: one in-memory
 * dev server, ferry's workers as `npm run dev` runs them (two connectors in-cluster, and two more
 * connectors in their own namespaces speaking DSP over loopback HTTP), and the baseline workers,
 * which run minimal workflows on the same server with the same (SDK default) worker settings, on
 * four task queues as ferry's four workers have.
 */

export const TINY_ASSET_BYTES = 1024;
const DSP_NAMESPACES = { consumer: 'bench-consumer', provider: 'bench-provider' };

/** One ferry deployment pair the goals can push through. */
export interface FerryPair {
  name: 'in-cluster' | 'dsp';
  consumer: { client: Client; ferry: FerryClient };
  provider: { client: Client; ferry: FerryClient };
  /** Starts a tiny File push; `processId` must be unique in the run. */
  start(processId: string): Promise<void>;
  /** The provider's process id of a consumer process. */
  providerPid(consumerPid: string): string;
  /** Workflow ids of the four workflows of a transfer (consumer TP, consumer DF, provider TP, provider DF). */
  workflowIds(consumerPid: string, providerPid?: string): { consumerProcess: string; consumerFlow: string; providerProcess: string; providerFlow: string };
  /** Waits until all four workflows of the transfer have closed; the consumer's final state. */
  awaitAll(consumerPid: string): Promise<string>;
}

export interface Baseline {
  /** Four task queues, one per ferry worker (consumer control plane, consumer data plane, provider control plane, provider data plane). */
  taskQueues: string[];
  client: Client;
  /** Runs one minimal one-activity workflow to its end. */
  minimal(id: string, queue?: number): Promise<void>;
  /** Runs four minimal workflows at once, each with the activity counts given (one per queue), to their end. */
  four(id: string, counts: { activities: number; localActivities: number }[]): Promise<void>;
}

export class BenchEnv {
  private clusterP?: Promise<BenchCluster>;
  private inClusterP?: Promise<FerryPair>;
  private dspP?: Promise<FerryPair>;
  private baselineP?: Promise<Baseline>;
  private probeP?: Promise<TransferHistories>;
  private readonly running: { shutdown(): Promise<void> }[] = [];

  constructor(private readonly log: (m: string) => void) {}

  get started(): boolean {
    return this.clusterP !== undefined;
  }

  cluster(): Promise<BenchCluster> {
    this.clusterP ??= (async () => {
      this.log('starting a Temporal dev server and bundling the workflows');
      return startBenchCluster([DSP_NAMESPACES.consumer, DSP_NAMESPACES.provider]);
    })();
    return this.clusterP;
  }

  /** Two connectors on one cluster, configured as `npm run dev` configures them, with a 1 KiB asset. */
  inCluster(): Promise<FerryPair> {
    this.inClusterP ??= (async () => {
      const cluster = await this.cluster();
      const fileRoot = path.join(cluster.root, 'in-cluster');
      ensureDemoAsset(fileRoot, TINY_ASSET_BYTES);
      const cfg = demoConfigs({ temporal: cluster.temporal, fileRoot });
      await Promise.all([
        cluster.controlPlane(cfg.consumer),
        cluster.controlPlane(cfg.provider),
        cluster.dataPlane(cfg.consumerDp),
        cluster.dataPlane(cfg.providerDp),
      ]);
      const side = { client: cluster.client, ferry: cluster.ferry };
      return ferryPair('in-cluster', side, side, cfg.providerAddress, (pid) => providerPidFor(inClusterAddress('consumer'), pid));
    })();
    return this.inClusterP;
  }

  /** Two deployments that share only HTTP: each connector in its own namespace, DSP over loopback (as test/integration/dsp.test.ts). */
  dsp(): Promise<FerryPair> {
    this.dspP ??= (async () => {
      const cluster = await this.cluster();
      const fileRoot = path.join(cluster.root, 'dsp');
      const asset = ensureDemoAsset(fileRoot, TINY_ASSET_BYTES);
      const [cPort, pPort] = [await freePort(), await freePort()];
      const consumerUrl = `http://127.0.0.1:${cPort}/dsp`;
      const providerUrl = `http://127.0.0.1:${pPort}/dsp`;
      const tokens = { c2p: 'bench-consumer-to-provider', p2c: 'bench-provider-to-consumer' };
      await Promise.all([
        cluster.controlPlane({
          namespace: DSP_NAMESPACES.consumer,
          connectorId: 'consumer',
          dataPlanes: [{ id: 'dsp-consumer-dp', transferTypes: ['File-PUSH'] }],
          dsp: { host: '127.0.0.1', port: cPort, publicUrl: consumerUrl, counterparties: [{ id: 'provider', address: providerUrl, inboundToken: tokens.p2c, outboundToken: tokens.c2p }] },
        }),
        cluster.dataPlane({ namespace: DSP_NAMESPACES.consumer, instanceId: 'dsp-consumer-dp', fileRoot, provisioners: [{ kind: 'file-destination' }] }),
        cluster.controlPlane({
          namespace: DSP_NAMESPACES.provider,
          connectorId: 'provider',
          dataPlanes: [{ id: 'dsp-provider-dp', transferTypes: ['File-PUSH'] }],
          assets: { [DEMO_ASSET]: { endpointType: 'File', endpoint: asset.file } },
          // the agreement both pairs transfer under (the in-cluster pair has it from demoConfigs)
          agreements: { [DEMO_AGREEMENT]: { assetId: DEMO_ASSET, counterparty: 'consumer' } },
          dsp: {
            host: '127.0.0.1',
            port: pPort,
            publicUrl: providerUrl,
            counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: tokens.c2p, outboundToken: tokens.p2c }],
          },
        }),
        cluster.dataPlane({ namespace: DSP_NAMESPACES.provider, instanceId: 'dsp-provider-dp', fileRoot, provisioners: [] }),
      ]);
      const consumer = cluster.clientFor(DSP_NAMESPACES.consumer);
      const provider = cluster.clientFor(DSP_NAMESPACES.provider);
      // the provider's DSP endpoint names its process after the authenticated caller's id
      return ferryPair('dsp', consumer, provider, providerUrl, (pid) => providerPidFor('consumer', pid));
    })();
    return this.dspP;
  }

  baseline(): Promise<Baseline> {
    this.baselineP ??= (async () => {
      const cluster = await this.cluster();
      const workflowBundle = await bundle(path.join(import.meta.dirname, 'baseline', 'workflows.ts'));
      // in the order of history.ts WORKFLOW_LABELS: consumer TP, consumer DF, provider TP, provider DF
      const taskQueues = ['bench-consumer-cp', 'bench-consumer-dp', 'bench-provider-cp', 'bench-provider-dp'];
      for (const taskQueue of taskQueues) {
        // SDK defaults and ferry's data converter (payload codec), as ferry's workers have
        const worker = await Worker.create({ connection: cluster.env.nativeConnection, dataConverter: cluster.dataConverter, namespace: 'default', taskQueue, workflowBundle, activities: baselineActivities });
        const running = worker.run();
        this.running.push({
          async shutdown() {
            if (worker.getState() === 'RUNNING') worker.shutdown();
            await running;
          },
        });
      }
      const client = cluster.client;
      return {
        taskQueues,
        client,
        async minimal(id, queue = 0) {
          await client.workflow.execute('minimalWorkflow', { workflowId: id, taskQueue: taskQueues[queue % taskQueues.length]!, args: [] });
        },
        async four(id, counts) {
          await Promise.all(
            counts.map((c, i) =>
              client.workflow.execute('activitiesWorkflow', { workflowId: `${id}-${i}`, taskQueue: taskQueues[i % taskQueues.length]!, args: [c.activities, c.localActivities] }),
            ),
          );
        },
      };
    })();
    return this.baselineP;
  }

  /** The histories of one tiny in-cluster push (made once a run; the history and cost goals share it). */
  probe(): Promise<TransferHistories> {
    this.probeP ??= this.inCluster().then((pair) => probeTransfer(this, pair));
    return this.probeP;
  }

  /** Stops every worker and the dev server; idempotent (the next use starts them anew). */
  async shutdown(): Promise<void> {
    const running = this.running.splice(0).reverse();
    const cluster = this.clusterP;
    this.clusterP = this.inClusterP = this.dspP = this.baselineP = this.probeP = undefined;
    for (const r of running) await r.shutdown().catch(() => undefined);
    if (cluster) await (await cluster.catch(() => undefined))?.shutdown();
  }
}

/**
 * One in-memory dev server for the bench, with ferry's payload codec on every client and worker and
 * both workflow bundles built once. (Not test/support/cluster.ts: that one scans every history for
 * secrets when it stops, which takes minutes after the thousands of workflows a bench run makes.)
 */
export interface BenchCluster {
  env: TestWorkflowEnvironment;
  /** A client of the default namespace with ferry's codec. */
  client: Client;
  ferry: FerryClient;
  dataConverter: DataConverter;
  temporal: { address: string; namespace: string };
  /** A fresh temp directory, removed at shutdown. */
  root: string;
  controlPlane(config: Omit<z.input<typeof ControlPlaneConfigSchema>, 'temporal'> & { namespace?: string }): Promise<unknown>;
  dataPlane(config: Omit<z.input<typeof DataPlaneConfigSchema>, 'temporal'> & { namespace?: string }): Promise<unknown>;
  clientFor(namespace: string): { client: Client; ferry: FerryClient };
  shutdown(): Promise<void>;
}

async function startBenchCluster(namespaces: string[]): Promise<BenchCluster> {
  const codec = Keyring.generate('bench-codec');
  const dataConverter = ferryDataConverter(codec);
  const [env, controlPlaneBundle, dataPlaneBundle] = await Promise.all([
    startDevServer({ extraNamespaces: namespaces, dataConverter }),
    bundle(CONTROL_PLANE_WORKFLOWS),
    bundle(DATA_PLANE_WORKFLOWS),
  ]);
  const temporal = { address: env.connection.options.address!, namespace: 'default' };
  const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-cluster-'));
  const running: { shutdown(): Promise<void> }[] = [];
  const ns = (namespace?: string) => ({ ...temporal, ...(namespace ? { namespace } : {}) });
  const start = async <W extends { shutdown(): Promise<void> }>(w: Promise<W>) => {
    running.push(await w);
  };
  return {
    env,
    client: env.client,
    ferry: new FerryClient(env.client),
    dataConverter,
    temporal,
    root,
    controlPlane: ({ namespace, ...config }) =>
      start(startControlPlaneWorker(ControlPlaneConfigSchema.parse({ ...config, temporal: ns(namespace) }), { workflowBundle: controlPlaneBundle, keys: { codec } })),
    dataPlane: ({ namespace, ...config }) =>
      start(
        startDataPlaneWorker(DataPlaneConfigSchema.parse({ ...config, temporal: ns(namespace) }), {
          workflowBundle: dataPlaneBundle,
          keys: { codec, edr: Keyring.generate('bench-edr'), callback: Keyring.generate('bench-callback') },
        }),
      ),
    clientFor(namespace) {
      const client = new Client({ connection: env.connection, namespace, dataConverter });
      return { client, ferry: new FerryClient(client) };
    },
    async shutdown() {
      for (const w of running.reverse()) await w.shutdown().catch(() => undefined);
      await env.teardown();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A consumer and a provider connector that push the tiny asset from one to the other. */
function ferryPair(name: FerryPair['name'], consumer: FerryPair['consumer'], provider: FerryPair['provider'], counterpartyAddress: string, providerPid: (pid: string) => string): FerryPair {
  const pair: FerryPair = {
    name,
    consumer,
    provider,
    async start(processId) {
      await consumer.ferry.startTransfer({
        connectorId: 'consumer',
        processId,
        counterpartyAddress,
        agreementId: DEMO_AGREEMENT,
        assetId: DEMO_ASSET,
        transferType: 'File-PUSH',
        dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
      });
    },
    providerPid,
    workflowIds: (pid, providerPid) => workflowIdsOf(pair, pid, providerPid),
    awaitAll: (pid) => awaitAll(pair, pid),
  };
  return pair;
}

function workflowIdsOf(pair: FerryPair, pid: string, providerPid = pair.providerPid(pid)) {
  return {
    consumerProcess: transferProcessWorkflowId('consumer', pid),
    consumerFlow: dataFlowWorkflowId('consumer', pid),
    providerProcess: transferProcessWorkflowId('provider', providerPid),
    providerFlow: dataFlowWorkflowId('provider', providerPid),
  };
}

/**
 * The consumer's process closes first (by then the other three exist); then wait for the rest. The
 * provider's pid is derived as the transports derive it; should that change, it is read from the
 * consumer's status instead (a query, so only then).
 */
async function awaitAll(pair: FerryPair, pid: string): Promise<string> {
  const { state } = await pair.consumer.ferry.result('consumer', pid);
  const provider = (providerPid: string) =>
    Promise.all([
      pair.provider.client.workflow.getHandle(transferProcessWorkflowId('provider', providerPid)).result(),
      pair.provider.client.workflow.getHandle(dataFlowWorkflowId('provider', providerPid)).result(),
    ]);
  await pair.consumer.client.workflow.getHandle(dataFlowWorkflowId('consumer', pid)).result();
  try {
    await provider(pair.providerPid(pid));
  } catch (e) {
    if (!(e instanceof WorkflowNotFoundError)) throw e;
    const { counterpartyPid } = await pair.consumer.ferry.status('consumer', pid);
    if (!counterpartyPid) throw new Error(`transfer ${pid} has no provider process`);
    await provider(counterpartyPid);
  }
  return state;
}
