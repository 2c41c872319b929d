import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createControlPlaneActivities } from '../activities/controlPlane.js';
import { HttpDspTransport } from '../activities/transport/HttpDspTransport.js';
import { InClusterTransport } from '../activities/transport/InClusterTransport.js';
import type { CounterpartyTransport } from '../src/Transport.js';
import { ferryDataConverter } from '../src/codec.js';
import { KEY_VARIABLES, requireKeyring, type Keyring } from '../src/keys.js';
import { ControlPlaneConfigSchema, type ControlPlaneConfig } from '../src/config.js';
import { controlPlaneTaskQueue } from '../src/ids.js';
import { durationMs } from '../src/settings.js';
import { CONNECTOR_WATCHDOG_WORKFLOW, watchdogWorkflowId } from '../src/Watchdog.js';
import { bundlerOptions, CONTROL_PLANE_WORKFLOWS } from './bundle.js';
import { startDspServer } from './dspServer.js';
import { connect, installRuntime, isMain, loadConfigFile, runMain, runWorker, untilPolling, untilSignal } from './runtime.js';

/** A control-plane worker: the TransferProcess workflows of one connector. */

export interface RunningControlPlane {
  connectorId: string;
  taskQueue: string;
  /** The DSP endpoint, when the connector speaks DSP over HTTP. */
  dspUrl?: string;
  shutdown(): Promise<void>;
}

export interface ControlPlaneKeys {
  /** Payload codec keys (the connector's; shared with its data planes and clients). */
  codec: Keyring;
}

/** The keys of a control plane from the environment (`FERRY_CODEC_KEYS` or `FERRY_CODEC_KEYS_FILE`). */
export const controlPlaneKeysFromEnv = (env: NodeJS.ProcessEnv = process.env): ControlPlaneKeys => ({
  codec: requireKeyring(KEY_VARIABLES.codec, 'payload codec keys', env),
});

export async function startControlPlaneWorker(
  config: ControlPlaneConfig,
  opts: { workflowBundle?: WorkflowBundleWithSourceMap; keys?: ControlPlaneKeys } = {},
): Promise<RunningControlPlane> {
  const keys = opts.keys ?? controlPlaneKeysFromEnv();
  const conn = await connect(config.temporal, { dataConverter: ferryDataConverter(keys.codec) });
  const taskQueue = controlPlaneTaskQueue(config.connectorId);
  const transports: CounterpartyTransport[] = [new InClusterTransport(conn.client)];
  const dspServer = config.dsp ? await startDspServer({ config: { ...config, dsp: config.dsp }, client: conn.client }) : undefined;
  if (config.dsp && dspServer) transports.push(new HttpDspTransport({ ...config.dsp, publicUrl: config.dsp.publicUrl ?? dspServer.url }));
  const worker = await Worker.create({
    connection: conn.native,
    dataConverter: conn.dataConverter,
    namespace: config.temporal.namespace,
    taskQueue,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: CONTROL_PLANE_WORKFLOWS, bundlerOptions: { webpackConfigHook: bundlerOptions } }),
    activities: createControlPlaneActivities({ config, client: conn.client, transports }),
  });
  const stop = runWorker(worker, async () => {
    await dspServer?.close();
    await conn.close();
  });
  // ready when Temporal sees it polling (clients refuse starts for connectors nobody polls for)
  await untilPolling(conn.client, worker).catch(async (e: unknown) => {
    await stop();
    throw e;
  });
  // the connector's watchdog: one workflow per connector, started by whichever worker comes first
  await conn.client.workflow.start(CONNECTOR_WATCHDOG_WORKFLOW, {
    workflowId: watchdogWorkflowId(config.connectorId),
    taskQueue,
    args: [{ connectorId: config.connectorId, intervalMs: durationMs(config.watchdog.interval) }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    staticSummary: `watchdog of connector ${config.connectorId}: checks its STARTED transfers every ${config.watchdog.interval}`,
  });
  return {
    connectorId: config.connectorId,
    taskQueue,
    ...(dspServer ? { dspUrl: dspServer.url } : {}),
    shutdown: stop,
  };
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    installRuntime();
    const config = loadConfigFile(ControlPlaneConfigSchema, 'control-plane');
    const cp = await startControlPlaneWorker(config);
    console.log(`control plane ${cp.connectorId} polling ${cp.taskQueue}${cp.dspUrl ? `; DSP at ${cp.dspUrl}` : ''}`);
    await untilSignal();
    await cp.shutdown();
  });
}
