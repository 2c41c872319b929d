import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createControlPlaneActivities } from '../activities/controlPlane.js';
import { InClusterTransport } from '../activities/transport/InClusterTransport.js';
import { ControlPlaneConfigSchema, type ControlPlaneConfig } from '../src/config.js';
import { controlPlaneTaskQueue } from '../src/ids.js';
import { bundlerOptions, CONTROL_PLANE_WORKFLOWS } from './bundle.js';
import { connect, installRuntime, isMain, loadConfigFile, runMain, runWorker, untilSignal } from './runtime.js';

/** A control-plane worker: the TransferProcess workflows of one connector. */

export interface RunningControlPlane {
  connectorId: string;
  taskQueue: string;
  shutdown(): Promise<void>;
}

export async function startControlPlaneWorker(config: ControlPlaneConfig, opts: { workflowBundle?: WorkflowBundleWithSourceMap } = {}): Promise<RunningControlPlane> {
  const conn = await connect(config.temporal);
  const taskQueue = controlPlaneTaskQueue(config.connectorId);
  const worker = await Worker.create({
    connection: conn.native,
    namespace: config.temporal.namespace,
    taskQueue,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: CONTROL_PLANE_WORKFLOWS, bundlerOptions: { webpackConfigHook: bundlerOptions } }),
    activities: createControlPlaneActivities({ config, client: conn.client, transports: [new InClusterTransport(conn.client)] }),
  });
  const stop = runWorker(worker, async () => {
    await conn.close();
  });
  return {
    connectorId: config.connectorId,
    taskQueue,
    shutdown: stop,
  };
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    installRuntime();
    const config = loadConfigFile(ControlPlaneConfigSchema, 'control-plane');
    const cp = await startControlPlaneWorker(config);
    console.log(`control plane ${cp.connectorId} polling ${cp.taskQueue}`);
    await untilSignal();
    await cp.shutdown();
  });
}
