#!/usr/bin/env node
import { mkdirSync } from 'node:fs';
import { Worker } from '@temporalio/worker';
import { createDataPlaneActivities } from '../activities/dataPlane.js';
import { FileDestinationProvisioner } from '../activities/provisioners/FileDestinationProvisioner.js';
import { HttpProvisioner } from '../activities/provisioners/HttpProvisioner.js';
import { EdrProvisioner } from '../activities/provisioners/EdrProvisioner.js';
import { EdrTokens } from '../activities/pull/EdrTokens.js';
import { PullSessions } from '../activities/pull/PullSessions.js';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { DpsAuth, dpsSigningKeyFromEnv } from '../activities/dps/auth.js';
import { ControlPlaneDirectory, DPS_MEMO_KEY, type DpsCallbackDeps, type DpsFlowMemo } from '../activities/dps/controlPlaneCallbacks.js';
import { JsonRecords, PendingCallbacks } from '../activities/dps/stateStore.js';
import { DataPlaneConfigSchema, type DataPlaneConfig, type DpsDataPlaneConfig } from '../src/config.js';
import { startDpsDataPlaneApi } from './dpsDataPlaneApi.js';
import { dataPlaneTaskQueue } from '../src/ids.js';
import type { Provisioner } from '../src/Provisioner.js';
import { ferryDataConverter } from '../src/codec.js';
import { ConfigError } from '../src/config.js';
import { Keyring, KEY_VARIABLES, keyringFromEnv, requireKeyring } from '../src/keys.js';
import { durationMs } from '../src/settings.js';
import { describeConnection } from '../src/connection.js';
import { workflowCode } from './bundle.js';
import { callbackSigner, startCallbackServer } from './callbackServer.js';
import { pullAccessFrom, startPublicApiServer, type PublicApiServer } from './publicApiServer.js';
import type { StartOptions } from './controlPlaneWorker.js';
import type { Readiness } from './health.js';
import { activityInterceptors } from './metrics.js';
import { commonWorkerOptions, connect, isMain, runWorker, runWorkerProcess, untilPolling, WORKER_ENV_HELP, workerReadiness } from './runtime.js';

/** A data-plane worker: one instance, its own task queue, its provisioners and its callback endpoint. */

export interface RunningDataPlane {
  instanceId: string;
  taskQueue: string;
  /** Where it is connected (address, namespace, TLS), for logs. */
  temporal: string;
  callbackUrl: string;
  /** Where consumers pull from (HttpData-PULL), when a public API is configured. */
  publicUrl?: string;
  /** The DPS data-plane API (Data Plane Signaling over HTTP), when configured. */
  dpsUrl?: string;
  /** Connected and polling (what /readyz answers). */
  readiness(): Promise<Readiness>;
  shutdown(): Promise<void>;
}

export function buildProvisioners(config: DataPlaneConfig): Provisioner[] {
  return config.provisioners.map((p) =>
    p.kind === 'file-destination'
      ? new FileDestinationProvisioner({ root: config.fileRoot })
      : new HttpProvisioner({ name: p.name, url: p.url, side: p.side, endpointTypes: p.endpointTypes, ...(p.endpointPrefix ? { endpointPrefix: p.endpointPrefix } : {}), ...(p.timeoutMs ? { timeoutMs: p.timeoutMs } : {}), ...(p.headers ? { headers: p.headers } : {}) }),
  );
}

/** A data plane's keys, one ring per purpose; nothing is derived from anything else. */
export interface DataPlaneKeys {
  /** Payload codec keys: the connector's, shared with its control plane and clients. */
  codec: Keyring;
  /** Signs this instance's EDR tokens (needed with a `publicApi`). */
  edr?: Keyring;
  /** Signs this instance's provisioner callback URLs (needed with an `http` provisioner). */
  callback?: Keyring;
}

/** A data plane's keys from the environment: `FERRY_CODEC_KEYS`, `FERRY_EDR_KEYS`, `FERRY_CALLBACK_KEYS` (or their `_FILE`s). */
export function dataPlaneKeysFromEnv(config: DataPlaneConfig, env: NodeJS.ProcessEnv = process.env): DataPlaneKeys {
  // every problem at once: an operator setting up a data plane fixes them in one go
  const problems: string[] = [];
  const attempt = <T>(read: () => T): T | undefined => {
    try {
      return read();
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(e.message);
      return undefined;
    }
  };
  const codec = attempt(() => requireKeyring(KEY_VARIABLES.codec, 'payload codec keys', env));
  const edr = attempt(() =>
    config.publicApi ? requireKeyring(KEY_VARIABLES.edr, `EDR signing keys for the public API of ${config.instanceId}`, env) : keyringFromEnv(KEY_VARIABLES.edr, env),
  );
  const callback = attempt(() =>
    needsCallbackKeys(config)
      ? requireKeyring(KEY_VARIABLES.callback, `callback keys for the http provisioners of ${config.instanceId}`, env)
      : keyringFromEnv(KEY_VARIABLES.callback, env),
  );
  if (problems.length || !codec) throw new ConfigError(problems.join('\n'));
  return { codec, ...(edr ? { edr } : {}), ...(callback ? { callback } : {}) };
}

/** External provisioning services call back on signed URLs, which must outlive a restart of this worker. */
const needsCallbackKeys = (config: DataPlaneConfig): boolean => config.provisioners.some((p) => p.kind === 'http');

/** The parts of a DPS data plane the activities (callbacks) and the HTTP API share. */
function createDpsDataPlane(config: DataPlaneConfig, dps: DpsDataPlaneConfig, client: Client, signingKey: Record<string, unknown> | undefined) {
  const stateDir = dps.stateDir ?? path.join(config.fileRoot, '.ferry-dps');
  const auth = new DpsAuth(dps.dataplaneId ?? config.instanceId, signingKey);
  const controlPlanes = new ControlPlaneDirectory(dps.controlPlanes, new JsonRecords(stateDir, 'controlplanes'));
  const pending = new PendingCallbacks(stateDir);
  return {
    api: { auth, controlPlanes, pending },
    callbacks: { client, auth, controlPlanes, pending, decisionWaitMs: dps.syncWaitMs + 30_000 } satisfies DpsCallbackDeps,
  };
}

/** The provider participant a DPS control plane named when it started a flow (the `aud` of its token renewals). */
const dpsParticipantOf = (client: Client) => async (workflowId: string): Promise<string | undefined> => {
  try {
    return ((await client.workflow.getHandle(workflowId).describe()).memo?.[DPS_MEMO_KEY] as DpsFlowMemo | undefined)?.participantId;
  } catch {
    return undefined;
  }
};

export async function startDataPlaneWorker(
  config: DataPlaneConfig,
  opts: StartOptions & { keys?: DataPlaneKeys } = {},
): Promise<RunningDataPlane> {
  const keys = opts.keys ?? dataPlaneKeysFromEnv(config);
  if (config.publicApi && !keys.edr) throw new ConfigError(`data plane ${config.instanceId} has a publicApi but no EDR signing keys (${KEY_VARIABLES.edr})`);
  if (needsCallbackKeys(config) && !keys.callback) throw new ConfigError(`data plane ${config.instanceId} has http provisioners but no callback keys (${KEY_VARIABLES.callback})`);
  mkdirSync(config.fileRoot, { recursive: true });
  // Without http provisioners no one calls back: a key for this run only signs URLs no one uses.
  const callbackKeys = keys.callback ?? Keyring.generate('ephemeral');
  const conn = await connect(config.temporal, { ...opts.connect, dataConverter: ferryDataConverter(keys.codec), ...(opts.log ? { log: opts.log } : {}) });
  const server = await startCallbackServer({ host: config.callback.host, port: config.callback.port, client: conn.client, keys: callbackKeys });
  const baseUrl = config.callback.publicUrl ?? server.url;
  const signer = callbackSigner(callbackKeys);
  const taskQueue = dataPlaneTaskQueue(config.instanceId);
  // A public API makes this instance a pull provider: it issues EDRs and serves their fetches.
  let publicApi: PublicApiServer | undefined;
  const provisioners = buildProvisioners(config);
  if (config.publicApi) {
    const api = config.publicApi;
    const tokens = new EdrTokens(keys.edr!, config.instanceId, durationMs(api.tokenTtl), durationMs(api.refreshTtl));
    const sessions = new PullSessions();
    publicApi = await startPublicApiServer({
      host: api.host,
      port: api.port,
      ...(api.publicUrl ? { basePath: new URL(api.publicUrl).pathname } : {}),
      access: pullAccessFrom(conn.client),
      tokens,
      sessions,
      fileRoot: config.fileRoot,
      ...(config.rateLimitBytesPerSec ? { rateLimitBytesPerSec: config.rateLimitBytesPerSec } : {}),
      ...(config.dps ? { renewal: { participantOf: dpsParticipantOf(conn.client), allowHttp: config.dps.didWebHttp } } : {}),
    });
    const publicUrl = api.publicUrl ?? publicApi.url;
    provisioners.push(new EdrProvisioner({ publicUrl: () => publicUrl, tokens, sessions }));
  }
  const dps = config.dps ? createDpsDataPlane(config, config.dps, conn.client, opts.dpsSigningKey ?? (opts.keys ? undefined : dpsSigningKeyFromEnv())) : undefined;
  const worker = await Worker.create({
    connection: conn.native,
    dataConverter: conn.dataConverter,
    namespace: conn.temporal.namespace,
    taskQueue,
    ...commonWorkerOptions(config.worker),
    // Heartbeats carry cancellation (suspend, terminate) to a running transfer: send them at most a
    // second apart rather than the SDK's 0.8 × heartbeat timeout, so a suspended push stops at once.
    maxHeartbeatThrottleInterval: '1s',
    defaultHeartbeatThrottleInterval: '1s',
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : workflowCode('dataPlane', (why) => opts.log?.warn({ why }, 'prebuilt workflow bundle not used; bundling from source'))),
    interceptors: { activity: [activityInterceptors()] },
    activities: createDataPlaneActivities({
      config,
      provisioners,
      client: conn.client,
      callbackUrl: (target) => signer.callbackUrl(baseUrl, target),
      ...(dps ? { dps: dps.callbacks } : {}),
    }),
  });
  const external = provisioners.filter((p) => p instanceof HttpProvisioner).map((p) => p.match);
  const dpsApi = dps ? await startDpsDataPlaneApi({ config: { ...config, dps: config.dps! }, client: conn.client, external, ...dps.api }) : undefined;
  const stop = runWorker(worker, async () => {
    await server.close();
    await publicApi?.close();
    await dpsApi?.close();
    await conn.close();
  });
  // ready when Temporal sees it polling (clients refuse starts for connectors nobody polls for)
  await untilPolling(conn.client, worker).catch(async (e: unknown) => {
    await stop();
    throw e;
  });
  return {
    instanceId: config.instanceId,
    taskQueue,
    temporal: describeConnection(conn.temporal),
    callbackUrl: baseUrl,
    ...(publicApi ? { publicUrl: config.publicApi?.publicUrl ?? publicApi.url } : {}),
    ...(dpsApi ? { dpsUrl: dpsApi.url } : {}),
    readiness: () => workerReadiness(worker, conn.connection),
    shutdown: stop,
  };
}

export const DATA_PLANE_HELP = `Usage: ferry-data-plane [--config FILE]
       npm run worker:data-plane -- --config FILE

Runs one data-plane instance: the DataFlow workflows and transfer activities on task queue
ferry-data-plane-<instanceId>, the provisioner callback endpoint and, with "publicApi", the public
pull endpoint. The config is DataPlaneConfigSchema (src/config.ts; README "Configuration"). Keys
come from the environment only: FERRY_CODEC_KEYS, FERRY_EDR_KEYS (with a publicApi) and
FERRY_CALLBACK_KEYS (with http provisioners), or their _FILE variables (README "Keys").

${WORKER_ENV_HELP}`;

if (isMain(import.meta.url)) {
  runWorkerProcess({
    kind: 'data-plane',
    schema: DataPlaneConfigSchema,
    help: DATA_PLANE_HELP,
    start: (config, { log, signal }) => startDataPlaneWorker(config, { keys: dataPlaneKeysFromEnv(config), dpsSigningKey: dpsSigningKeyFromEnv(), log, connect: { signal } }),
    describe: (dp) => ({
      message: `data plane ${dp.instanceId} polling ${dp.taskQueue}; provisioner callbacks at ${dp.callbackUrl}${dp.publicUrl ? `; public API at ${dp.publicUrl}` : ''}${dp.dpsUrl ? `; DPS at ${dp.dpsUrl}` : ''}`,
      fields: { instanceId: dp.instanceId, taskQueue: dp.taskQueue, temporal: dp.temporal, callbackUrl: dp.callbackUrl, ...(dp.publicUrl ? { publicUrl: dp.publicUrl } : {}), ...(dp.dpsUrl ? { dpsUrl: dp.dpsUrl } : {}) },
    }),
  });
}
