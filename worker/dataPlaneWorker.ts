import { hkdfSync } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createDataPlaneActivities } from '../activities/dataPlane.js';
import { FileDestinationProvisioner } from '../activities/provisioners/FileDestinationProvisioner.js';
import { HttpProvisioner } from '../activities/provisioners/HttpProvisioner.js';
import { DataPlaneConfigSchema, type DataPlaneConfig } from '../src/config.js';
import { dataPlaneTaskQueue } from '../src/ids.js';
import type { Provisioner } from '../src/Provisioner.js';
import { SecretBox } from '../src/secrets.js';
import { bundlerOptions, DATA_PLANE_WORKFLOWS } from './bundle.js';
import { callbackSigner, startCallbackServer } from './callbackServer.js';
import { connect, installRuntime, isMain, loadConfigFile, runMain, runWorker, untilSignal } from './runtime.js';

/** A data-plane worker: one instance, its own task queue, its provisioners and its callback endpoint. */

export interface RunningDataPlane {
  instanceId: string;
  taskQueue: string;
  callbackUrl: string;
  shutdown(): Promise<void>;
}

export function buildProvisioners(config: DataPlaneConfig): Provisioner[] {
  return config.provisioners.map((p) =>
    p.kind === 'file-destination'
      ? new FileDestinationProvisioner({ root: config.fileRoot })
      : new HttpProvisioner({ name: p.name, url: p.url, side: p.side, endpointTypes: p.endpointTypes, ...(p.timeoutMs ? { timeoutMs: p.timeoutMs } : {}) }),
  );
}

export async function startDataPlaneWorker(config: DataPlaneConfig, opts: { workflowBundle?: WorkflowBundleWithSourceMap } = {}): Promise<RunningDataPlane> {
  mkdirSync(config.fileRoot, { recursive: true });
  const secrets = SecretBox.fromBase64(config.secretKey);
  // Callback URLs must survive a restart of this worker: derive their key from the configured secret.
  const callbackKey = config.callbackKey
    ? Buffer.from(config.callbackKey, 'base64')
    : Buffer.from(hkdfSync('sha256', Buffer.from(config.secretKey, 'base64'), Buffer.alloc(0), 'ferry-callback-v1', 32));
  const conn = await connect(config.temporal);
  const server = await startCallbackServer({ host: config.callback.host, port: config.callback.port, client: conn.client, key: callbackKey, secrets });
  const baseUrl = config.callback.publicUrl ?? server.url;
  const signer = callbackSigner(callbackKey);
  const taskQueue = dataPlaneTaskQueue(config.instanceId);
  const worker = await Worker.create({
    connection: conn.native,
    namespace: config.temporal.namespace,
    taskQueue,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: DATA_PLANE_WORKFLOWS, bundlerOptions: { webpackConfigHook: bundlerOptions } }),
    activities: createDataPlaneActivities({
      config,
      provisioners: buildProvisioners(config),
      client: conn.client,
      secrets,
      callbackUrl: (target) => signer.callbackUrl(baseUrl, target),
    }),
  });
  const stop = runWorker(worker, async () => {
    await server.close();
    await conn.close();
  });
  return {
    instanceId: config.instanceId,
    taskQueue,
    callbackUrl: baseUrl,
    shutdown: stop,
  };
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    installRuntime();
    const config = loadConfigFile(DataPlaneConfigSchema, 'data-plane');
    const dp = await startDataPlaneWorker(config);
    console.log(`data plane ${dp.instanceId} polling ${dp.taskQueue}; provisioner callbacks at ${dp.callbackUrl}`);
    await untilSignal();
    await dp.shutdown();
  });
}
