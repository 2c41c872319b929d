#!/usr/bin/env node
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createControlPlaneActivities } from '../activities/controlPlane.js';
import { HttpDspTransport } from '../activities/transport/HttpDspTransport.js';
import { InClusterTransport } from '../activities/transport/InClusterTransport.js';
import type { CounterpartyTransport } from '../src/Transport.js';
import { ferryDataConverter } from '../src/codec.js';
import { KEY_VARIABLES, requireKeyring, type Keyring } from '../src/keys.js';
import { ControlPlaneConfigSchema, type ControlPlaneConfig } from '../src/config.js';
import { describeConnection } from '../src/connection.js';
import { controlPlaneTaskQueue } from '../src/ids.js';
import { durationMs } from '../src/settings.js';
import { CONNECTOR_WATCHDOG_WORKFLOW, watchdogWorkflowId } from '../src/Watchdog.js';
import { workflowCode } from './bundle.js';
import { startDspServer } from './dspServer.js';
import type { Readiness } from './health.js';
import type { FerryLogger } from './logging.js';
import { activityInterceptors } from './metrics.js';
import { commonWorkerOptions, connect, isMain, runWorker, runWorkerProcess, untilPolling, WORKER_ENV_HELP, workerReadiness, type ConnectOptions } from './runtime.js';

/** A control-plane worker: the TransferProcess workflows of one connector. */

export interface RunningControlPlane {
  connectorId: string;
  taskQueue: string;
  /** Where it is connected (address, namespace, TLS), for logs. */
  temporal: string;
  /** The DSP endpoint, when the connector speaks DSP over HTTP. */
  dspUrl?: string;
  /** Connected and polling (what /readyz answers). */
  readiness(): Promise<Readiness>;
  shutdown(): Promise<void>;
}

export interface StartOptions {
  /** A bundle built in this process (tests, dev); otherwise the prebuilt one from `npm run build`, or bundled at start. */
  workflowBundle?: WorkflowBundleWithSourceMap;
  log?: FerryLogger;
  /** Connection retries (default: for ever, with capped backoff) and their abort signal. */
  connect?: Pick<ConnectOptions, 'retry' | 'signal'>;
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
  opts: StartOptions & { keys?: ControlPlaneKeys } = {},
): Promise<RunningControlPlane> {
  const keys = opts.keys ?? controlPlaneKeysFromEnv();
  const conn = await connect(config.temporal, { ...opts.connect, dataConverter: ferryDataConverter(keys.codec), ...(opts.log ? { log: opts.log } : {}) });
  const taskQueue = controlPlaneTaskQueue(config.connectorId);
  const transports: CounterpartyTransport[] = [new InClusterTransport(conn.client)];
  const dspServer = config.dsp ? await startDspServer({ config: { ...config, dsp: config.dsp }, client: conn.client }) : undefined;
  if (config.dsp && dspServer) transports.push(new HttpDspTransport({ ...config.dsp, publicUrl: config.dsp.publicUrl ?? dspServer.url }));
  const worker = await Worker.create({
    connection: conn.native,
    dataConverter: conn.dataConverter,
    namespace: conn.temporal.namespace,
    taskQueue,
    ...commonWorkerOptions(config.worker),
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : workflowCode('controlPlane', (why) => opts.log?.warn({ why }, 'prebuilt workflow bundle not used; bundling from source'))),
    interceptors: { activity: [activityInterceptors()] },
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
    temporal: describeConnection(conn.temporal),
    ...(dspServer ? { dspUrl: dspServer.url } : {}),
    readiness: () => workerReadiness(worker, conn.connection),
    shutdown: stop,
  };
}

export const CONTROL_PLANE_HELP = `Usage: ferry-control-plane [--config FILE]
       npm run worker:control-plane -- --config FILE

Runs the control-plane worker of one connector: its TransferProcess workflows (task queue
ferry-control-plane-<connectorId>) and, with a "dsp" block, the Dataspace Protocol endpoint.
The config is ControlPlaneConfigSchema (src/config.ts; README "Configuration"). Keys come from
the environment only: FERRY_CODEC_KEYS or FERRY_CODEC_KEYS_FILE (README "Keys").

${WORKER_ENV_HELP}`;

if (isMain(import.meta.url)) {
  runWorkerProcess({
    kind: 'control-plane',
    schema: ControlPlaneConfigSchema,
    help: CONTROL_PLANE_HELP,
    start: (config, { log, signal }) => startControlPlaneWorker(config, { keys: controlPlaneKeysFromEnv(), log, connect: { signal } }),
    describe: (cp) => ({
      message: `control plane ${cp.connectorId} polling ${cp.taskQueue}${cp.dspUrl ? `; DSP at ${cp.dspUrl}` : ''}`,
      fields: { connectorId: cp.connectorId, taskQueue: cp.taskQueue, temporal: cp.temporal, ...(cp.dspUrl ? { dspUrl: cp.dspUrl } : {}) },
    }),
  });
}
