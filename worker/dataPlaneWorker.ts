import { hkdfSync } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createDataPlaneActivities } from '../activities/dataPlane.js';
import { FileDestinationProvisioner } from '../activities/provisioners/FileDestinationProvisioner.js';
import { HttpProvisioner } from '../activities/provisioners/HttpProvisioner.js';
import { EdrProvisioner } from '../activities/provisioners/EdrProvisioner.js';
import { EdrTokens } from '../activities/pull/EdrTokens.js';
import { PullSessions } from '../activities/pull/PullSessions.js';
import { DataPlaneConfigSchema, type DataPlaneConfig } from '../src/config.js';
import { dataPlaneTaskQueue } from '../src/ids.js';
import type { Provisioner } from '../src/Provisioner.js';
import { SecretBox } from '../src/secrets.js';
import { durationMs } from '../src/settings.js';
import { bundlerOptions, DATA_PLANE_WORKFLOWS } from './bundle.js';
import { callbackSigner, startCallbackServer } from './callbackServer.js';
import { pullAccessFrom, startPublicApiServer, type PublicApiServer } from './publicApiServer.js';
import { connect, installRuntime, isMain, loadConfigFile, runMain, runWorker, untilPolling, untilSignal } from './runtime.js';

/** A data-plane worker: one instance, its own task queue, its provisioners and its callback endpoint. */

export interface RunningDataPlane {
  instanceId: string;
  taskQueue: string;
  callbackUrl: string;
  /** Where consumers pull from (HttpData-PULL), when a public API is configured. */
  publicUrl?: string;
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
  // A public API makes this instance a pull provider: it issues EDRs and serves their fetches.
  let publicApi: PublicApiServer | undefined;
  const provisioners = buildProvisioners(config);
  if (config.publicApi) {
    const api = config.publicApi;
    const key = api.tokenKey ? new Uint8Array(Buffer.from(api.tokenKey, 'base64')) : EdrTokens.deriveKey(config.secretKey);
    const tokens = new EdrTokens(key, config.instanceId, durationMs(api.tokenTtl), durationMs(api.refreshTtl));
    const sessions = new PullSessions();
    publicApi = await startPublicApiServer({
      host: api.host,
      port: api.port,
      ...(api.publicUrl ? { basePath: new URL(api.publicUrl).pathname } : {}),
      access: pullAccessFrom(conn.client),
      tokens,
      sessions,
      secrets,
      fileRoot: config.fileRoot,
      ...(config.rateLimitBytesPerSec ? { rateLimitBytesPerSec: config.rateLimitBytesPerSec } : {}),
    });
    const publicUrl = api.publicUrl ?? publicApi.url;
    provisioners.push(new EdrProvisioner({ publicUrl: () => publicUrl, tokens, sessions }));
  }
  const worker = await Worker.create({
    connection: conn.native,
    namespace: config.temporal.namespace,
    taskQueue,
    // Heartbeats carry cancellation (suspend, terminate) to a running transfer: send them at most a
    // second apart rather than the SDK's 0.8 × heartbeat timeout, so a suspended push stops at once.
    maxHeartbeatThrottleInterval: '1s',
    defaultHeartbeatThrottleInterval: '1s',
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: DATA_PLANE_WORKFLOWS, bundlerOptions: { webpackConfigHook: bundlerOptions } }),
    activities: createDataPlaneActivities({
      config,
      provisioners,
      client: conn.client,
      secrets,
      callbackUrl: (target) => signer.callbackUrl(baseUrl, target),
    }),
  });
  const stop = runWorker(worker, async () => {
    await server.close();
    await publicApi?.close();
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
    callbackUrl: baseUrl,
    ...(publicApi ? { publicUrl: config.publicApi?.publicUrl ?? publicApi.url } : {}),
    shutdown: stop,
  };
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    installRuntime();
    const config = loadConfigFile(DataPlaneConfigSchema, 'data-plane');
    const dp = await startDataPlaneWorker(config);
    console.log(`data plane ${dp.instanceId} polling ${dp.taskQueue}; provisioner callbacks at ${dp.callbackUrl}${dp.publicUrl ? `; public API at ${dp.publicUrl}` : ''}`);
    await untilSignal();
    await dp.shutdown();
  });
}
