#!/usr/bin/env node
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { FastifyInstance } from 'fastify';
import { createControlPlaneActivities, type ControlPlaneDeps } from '../activities/controlPlane.js';
import { DpsAuth, dpsSigningKeyFromEnv } from '../activities/dps/auth.js';
import { DataPlaneDirectory } from '../activities/dps/dataPlaneClient.js';
import { JsonRecords } from '../activities/dps/stateStore.js';
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
import { startDpsControlPlaneApi, type DpsControlPlaneApi } from './dpsControlPlaneApi.js';
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
  /** The DPS signaling endpoint (data-plane callbacks and registration), when configured. */
  dpsUrl?: string;
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
  /** The private JWK that signs our self-signed DPS tokens; from `FERRY_DPS_SIGNING_KEY` when the keys come from the environment. */
  dpsSigningKey?: Record<string, unknown>;
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
  opts: StartOptions & {
    keys?: ControlPlaneKeys;
    /** Test harnesses: extra routes on the DPS signaling endpoint. */
    dpsRoutes?: (app: FastifyInstance) => void;
  } = {},
): Promise<RunningControlPlane> {
  const keys = opts.keys ?? controlPlaneKeysFromEnv();
  const conn = await connect(config.temporal, { ...opts.connect, dataConverter: ferryDataConverter(keys.codec), ...(opts.log ? { log: opts.log } : {}) });
  const taskQueue = controlPlaneTaskQueue(config.connectorId);
  const transports: CounterpartyTransport[] = [new InClusterTransport(conn.client)];
  const dspServer = config.dsp ? await startDspServer({ config: { ...config, dsp: config.dsp }, client: conn.client }) : undefined;
  if (config.dsp && dspServer) transports.push(new HttpDspTransport({ ...config.dsp, publicUrl: config.dsp.publicUrl ?? dspServer.url }));
  let dps: ControlPlaneDeps['dps'];
  let dpsApi: DpsControlPlaneApi | undefined;
  if (config.dpsSignaling) {
    const signaling = config.dpsSignaling;
    const auth = new DpsAuth(signaling.controlplaneId ?? config.connectorId, opts.dpsSigningKey ?? (opts.keys ? undefined : dpsSigningKeyFromEnv()));
    const planes = new DataPlaneDirectory(config.dataPlanes, new JsonRecords(signaling.stateDir, 'dataplanes'));
    dps = { signaling, auth, planes };
    dpsApi = await startDpsControlPlaneApi({ signaling, connectorId: config.connectorId, client: conn.client, auth, planes, ...(opts.dpsRoutes ? { extend: opts.dpsRoutes } : {}) });
  }
  const worker = await Worker.create({
    connection: conn.native,
    dataConverter: conn.dataConverter,
    namespace: conn.temporal.namespace,
    taskQueue,
    ...commonWorkerOptions(config.worker),
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : workflowCode('controlPlane', (why) => opts.log?.warn({ why }, 'prebuilt workflow bundle not used; bundling from source'))),
    interceptors: { activity: [activityInterceptors()] },
    activities: createControlPlaneActivities({ config, client: conn.client, transports, ...(dps ? { dps } : {}) }),
  });
  const stop = runWorker(worker, async () => {
    await dspServer?.close();
    await dpsApi?.close();
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
    ...(dpsApi ? { dpsUrl: dpsApi.url } : {}),
    readiness: () => workerReadiness(worker, conn.connection),
    shutdown: stop,
  };
}

export const CONTROL_PLANE_HELP = `Usage: ferry-control-plane [--config FILE]
       npm run worker:control-plane -- --config FILE

Runs the control-plane worker of one connector: its TransferProcess workflows (task queue
ferry-control-plane-<connectorId>), its watchdog, with a "dsp" block the Dataspace Protocol
endpoint, and with a "dpsSignaling" block the Data Plane Signaling endpoint. The config is
ControlPlaneConfigSchema (src/config.ts; README "Configuration"). Keys come from the environment
only: FERRY_CODEC_KEYS or FERRY_CODEC_KEYS_FILE, and FERRY_DPS_SIGNING_KEY(_FILE) for DPS
(README "Keys").

${WORKER_ENV_HELP}`;

if (isMain(import.meta.url)) {
  runWorkerProcess({
    kind: 'control-plane',
    schema: ControlPlaneConfigSchema,
    help: CONTROL_PLANE_HELP,
    start: (config, { log, signal }) => startControlPlaneWorker(config, { keys: controlPlaneKeysFromEnv(), dpsSigningKey: dpsSigningKeyFromEnv(), log, connect: { signal } }),
    describe: (cp) => ({
      message: `control plane ${cp.connectorId} polling ${cp.taskQueue}${cp.dspUrl ? `; DSP at ${cp.dspUrl}` : ''}${cp.dpsUrl ? `; DPS signaling at ${cp.dpsUrl}` : ''}`,
      fields: { connectorId: cp.connectorId, taskQueue: cp.taskQueue, temporal: cp.temporal, ...(cp.dspUrl ? { dspUrl: cp.dspUrl } : {}), ...(cp.dpsUrl ? { dpsUrl: cp.dpsUrl } : {}) },
    }),
  });
}
