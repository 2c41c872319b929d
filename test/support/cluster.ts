import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { defaultPayloadConverter, type DataConverter, type Payload } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { FerryClient } from '../../src/client.js';
import type { z } from 'zod';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../../src/config.js';
import { EncryptionCodec, ferryDataConverter } from '../../src/codec.js';
import { Keyring } from '../../src/keys.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../../worker/bundle.js';
import { startControlPlaneWorker, type ControlPlaneKeys, type RunningControlPlane } from '../../worker/controlPlaneWorker.js';
import { startDataPlaneWorker, type DataPlaneKeys, type RunningDataPlane } from '../../worker/dataPlaneWorker.js';
import { startDevServer } from '../../worker/devServer.js';
import { installRuntime } from '../../worker/runtime.js';
import { describeFindings, recordSdkLog, scanHistories, scanLogs, sdkLog, secretsOf, type Secret } from './historyScan.js';
import { workerOutputs } from './processes.js';

/**
 * A real cluster for one test file: an in-memory Temporal dev server, workflow bundles built
 * once, and helpers to start control-plane and data-plane workers against it.
 */
export interface Cluster {
  env: TestWorkflowEnvironment;
  /** A client of the default namespace with ferry's codec. */
  client: Client;
  ferry: FerryClient;
  /** The payload codec keys every client and worker of the cluster uses (unless a worker is given its own). */
  codecKeys: Keyring;
  /** ferry's data converter over `codecKeys`: give it to any other client a test builds. */
  dataConverter: DataConverter;
  /** A payload as the server stores it (from a raw history or describe), decrypted and converted. */
  decodePayload<T = unknown>(payload: Payload): Promise<T>;
  /** The EDR and callback keys of a data-plane instance (made on first use; a restarted instance gets the same). */
  dataPlaneKeys(instanceId: string): Required<DataPlaneKeys>;
  /** The environment a worker process of this cluster needs (`FERRY_*_KEYS`), for `spawnWorker`. */
  workerEnv(instanceId?: string): Record<string, string>;
  temporal: { address: string; namespace: string };
  /** A fresh temp directory, removed at shutdown. */
  root: string;
  bundles: { controlPlane: WorkflowBundleWithSourceMap; dataPlane: WorkflowBundleWithSourceMap };
  /** Workers in the default namespace unless `namespace` says otherwise; the cluster's keys unless `keys` says otherwise. */
  /** Config as a config file would have it (defaults filled in by the schema). */
  controlPlane(config: Omit<z.input<typeof ControlPlaneConfigSchema>, 'temporal'> & { namespace?: string; keys?: ControlPlaneKeys }): Promise<RunningControlPlane>;
  dataPlane(config: Omit<z.input<typeof DataPlaneConfigSchema>, 'temporal'> & { namespace?: string; keys?: Partial<DataPlaneKeys> }): Promise<RunningDataPlane>;
  /** A client (and FerryClient) of another namespace. */
  clientFor(namespace: string): { client: Client; ferry: FerryClient };
  /**
   * A credential of the test's own (a token, a password, a header value, other keys): at shutdown no
   * history of the cluster and no captured log may contain it. The cluster's keys and the DSP tokens
   * of its control planes are registered by themselves.
   */
  registerSecret(value: string | Buffer | Keyring, label?: string): void;
  /** The scan `shutdown` runs (exposed so a test can also run it mid-way). Throws naming every secret found and where. */
  assertNoSecrets(): Promise<void>;
  /** Stops the workers, runs `assertNoSecrets`, stops the server; throws (after stopping everything) if a secret was found. */
  shutdown(): Promise<void>;
}

let bundles: Cluster['bundles'] | undefined;

export async function startCluster(opts: { namespaces?: string[] } = {}): Promise<Cluster> {
  installRuntime('WARN', recordSdkLog);
  const codecKeys = Keyring.generate('cluster-codec');
  const dataConverter = ferryDataConverter(codecKeys);
  const [env, built] = await Promise.all([
    startDevServer({ ...(opts.namespaces ? { extraNamespaces: opts.namespaces } : {}), dataConverter }),
    bundles ? Promise.resolve(bundles) : Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]).then(([controlPlane, dataPlane]) => ({ controlPlane, dataPlane })),
  ]);
  bundles = built;
  const temporal = { address: env.connection.options.address!, namespace: 'default' };
  const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-test-'));
  const running: { shutdown(): Promise<void> }[] = [];
  const secrets: Secret[] = [...secretsOf('codec', codecKeys)];
  const registerSecret = (value: string | Buffer | Keyring, label = 'registered secret') => secrets.push(...secretsOf(label, value));
  const perInstance = new Map<string, Required<DataPlaneKeys>>();
  const dataPlaneKeys = (instanceId: string): Required<DataPlaneKeys> => {
    let keys = perInstance.get(instanceId);
    if (!keys) {
      keys = { codec: codecKeys, edr: Keyring.generate(`${instanceId}-edr`), callback: Keyring.generate(`${instanceId}-callback`) };
      perInstance.set(instanceId, keys);
      registerSecret(keys.edr, `EDR keys of ${instanceId}`);
      registerSecret(keys.callback, `callback keys of ${instanceId}`);
    }
    return keys;
  };
  const assertNoSecrets = async () => {
    const scan = await scanHistories(env.client, ['default', ...(opts.namespaces ?? [])], secrets);
    const findings = [...scan.findings, ...scanLogs([{ name: 'SDK log of the test process', text: sdkLog.join('\n') }, ...workerOutputs], secrets)];
    if (findings.length) throw new Error(`secrets found in ${scan.workflows} workflow histories or the logs:\n${describeFindings(findings)}`);
  };
  return {
    env,
    client: env.client,
    ferry: new FerryClient(env.client),
    codecKeys,
    dataConverter,
    async decodePayload<T>(payload: Payload) {
      const [plain] = await new EncryptionCodec(codecKeys).decode([payload]);
      return defaultPayloadConverter.fromPayload<T>(plain!);
    },
    dataPlaneKeys,
    workerEnv(instanceId) {
      const keys = instanceId ? dataPlaneKeys(instanceId) : undefined;
      return {
        FERRY_CODEC_KEYS: codecKeys.serialize(),
        ...(keys ? { FERRY_EDR_KEYS: keys.edr.serialize(), FERRY_CALLBACK_KEYS: keys.callback.serialize() } : {}),
      };
    },
    temporal,
    root,
    bundles: built,
    async controlPlane({ namespace, keys, ...config }) {
      const parsed = ControlPlaneConfigSchema.parse({ ...config, temporal: { ...temporal, ...(namespace ? { namespace } : {}) } });
      for (const c of parsed.dsp?.counterparties ?? []) {
        registerSecret(c.inboundToken, `DSP token ${c.id}→${parsed.connectorId}`);
        registerSecret(c.outboundToken, `DSP token ${parsed.connectorId}→${c.id}`);
      }
      if (keys) registerSecret(keys.codec, `codec keys of ${parsed.connectorId}`);
      const w = await startControlPlaneWorker(parsed, { workflowBundle: built.controlPlane, keys: keys ?? { codec: codecKeys } });
      running.push(w);
      return w;
    },
    async dataPlane({ namespace, keys, ...config }) {
      const parsed = DataPlaneConfigSchema.parse({ ...config, temporal: { ...temporal, ...(namespace ? { namespace } : {}) } });
      for (const [purpose, ring] of Object.entries(keys ?? {})) if (ring) registerSecret(ring, `${purpose} keys of ${parsed.instanceId}`);
      const w = await startDataPlaneWorker(parsed, { workflowBundle: built.dataPlane, keys: { ...dataPlaneKeys(parsed.instanceId), ...keys } });
      running.push(w);
      return w;
    },
    clientFor(namespace) {
      const client = new Client({ connection: env.connection, namespace, dataConverter });
      return { client, ferry: new FerryClient(client) };
    },
    registerSecret,
    assertNoSecrets,
    async shutdown() {
      // the scan first, while the server is up whatever the workers do; then the workers, bounded: a
      // worker whose activity ignores cancellation (a test that timed out mid-transfer) must not keep
      // the server up, and stops for good when the server goes
      let scanFailure: unknown;
      await assertNoSecrets().catch((e: unknown) => (scanFailure = e));
      const stopped = Promise.all(running.reverse().map((w) => w.shutdown().catch(() => undefined)));
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([stopped, new Promise((r) => (bound = setTimeout(r, 60_000)))]);
      clearTimeout(bound);
      await env.teardown();
      rmSync(root, { recursive: true, force: true });
      if (scanFailure) throw scanFailure;
    },
  };
}

/** A port free right now on loopback (for servers whose address must be configured before they start). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}
