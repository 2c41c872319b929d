import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { FastifyInstance } from 'fastify';
import { createControlPlaneActivities, type ControlPlaneDeps } from '../activities/controlPlane.js';
import { DpsAuth, dpsSigningKeyFromEnv } from '../activities/dps/auth.js';
import { DataPlaneDirectory } from '../activities/dps/dataPlaneClient.js';
import { JsonRecords } from '../activities/dps/stateStore.js';
import { startDpsControlPlaneApi, type DpsControlPlaneApi } from './dpsControlPlaneApi.js';
import { HttpDspTransport } from '../activities/transport/HttpDspTransport.js';
import { InClusterTransport } from '../activities/transport/InClusterTransport.js';
import type { CounterpartyTransport } from '../src/Transport.js';
import { ferryDataConverter } from '../src/codec.js';
import { KEY_VARIABLES, requireKeyring, type Keyring } from '../src/keys.js';
import { ControlPlaneConfigSchema, type ControlPlaneConfig } from '../src/config.js';
import { controlPlaneTaskQueue } from '../src/ids.js';
import { bundlerOptions, CONTROL_PLANE_WORKFLOWS } from './bundle.js';
import { startDspServer } from './dspServer.js';
import { connect, installRuntime, isMain, loadConfigFile, runMain, runWorker, untilSignal } from './runtime.js';

/** A control-plane worker: the TransferProcess workflows of one connector. */

export interface RunningControlPlane {
  connectorId: string;
  taskQueue: string;
  /** The DSP endpoint, when the connector speaks DSP over HTTP. */
  dspUrl?: string;
  /** The DPS signaling endpoint (data-plane callbacks and registration), when configured. */
  dpsUrl?: string;
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
  opts: {
    workflowBundle?: WorkflowBundleWithSourceMap;
    keys?: ControlPlaneKeys;
    /** The private JWK that signs our self-signed DPS tokens; from `FERRY_DPS_SIGNING_KEY` when the keys come from the environment. */
    dpsSigningKey?: Record<string, unknown>;
    /** Test harnesses: extra routes on the DPS signaling endpoint. */
    dpsRoutes?: (app: FastifyInstance) => void;
  } = {},
): Promise<RunningControlPlane> {
  const keys = opts.keys ?? controlPlaneKeysFromEnv();
  const conn = await connect(config.temporal, { dataConverter: ferryDataConverter(keys.codec) });
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
    namespace: config.temporal.namespace,
    taskQueue,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: CONTROL_PLANE_WORKFLOWS, bundlerOptions: { webpackConfigHook: bundlerOptions } }),
    activities: createControlPlaneActivities({ config, client: conn.client, transports, ...(dps ? { dps } : {}) }),
  });
  const stop = runWorker(worker, async () => {
    await dspServer?.close();
    await dpsApi?.close();
    await conn.close();
  });
  return {
    connectorId: config.connectorId,
    taskQueue,
    ...(dspServer ? { dspUrl: dspServer.url } : {}),
    ...(dpsApi ? { dpsUrl: dpsApi.url } : {}),
    shutdown: stop,
  };
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    installRuntime();
    const config = loadConfigFile(ControlPlaneConfigSchema, 'control-plane');
    const cp = await startControlPlaneWorker(config);
    console.log(`control plane ${cp.connectorId} polling ${cp.taskQueue}${cp.dspUrl ? `; DSP at ${cp.dspUrl}` : ''}${cp.dpsUrl ? `; DPS signaling at ${cp.dpsUrl}` : ''}`);
    await untilSignal();
    await cp.shutdown();
  });
}
