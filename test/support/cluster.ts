import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { FerryClient } from '../../src/client.js';
import type { z } from 'zod';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../../src/config.js';
import { SecretBox } from '../../src/secrets.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../../worker/bundle.js';
import { startControlPlaneWorker, type RunningControlPlane } from '../../worker/controlPlaneWorker.js';
import { startDataPlaneWorker, type RunningDataPlane } from '../../worker/dataPlaneWorker.js';
import { startDevServer } from '../../worker/devServer.js';
import { installRuntime } from '../../worker/runtime.js';

/**
 * A real cluster for one test file: an in-memory Temporal dev server, workflow bundles built
 * once, and helpers to start control-plane and data-plane workers against it.
 */
export interface Cluster {
  env: TestWorkflowEnvironment;
  client: Client;
  ferry: FerryClient;
  secrets: SecretBox;
  secretKey: string;
  temporal: { address: string; namespace: string };
  /** A fresh temp directory, removed at shutdown. */
  root: string;
  bundles: { controlPlane: WorkflowBundleWithSourceMap; dataPlane: WorkflowBundleWithSourceMap };
  /** Workers in the default namespace unless `namespace` says otherwise. */
  /** Config as a config file would have it (defaults filled in by the schema). */
  controlPlane(config: Omit<z.input<typeof ControlPlaneConfigSchema>, 'temporal' | 'secretKey'> & { namespace?: string }): Promise<RunningControlPlane>;
  dataPlane(config: Omit<z.input<typeof DataPlaneConfigSchema>, 'temporal' | 'secretKey'> & { namespace?: string }): Promise<RunningDataPlane>;
  /** A client (and FerryClient) of another namespace. */
  clientFor(namespace: string): { client: Client; ferry: FerryClient };
  shutdown(): Promise<void>;
}

let bundles: Cluster['bundles'] | undefined;

export async function startCluster(opts: { namespaces?: string[] } = {}): Promise<Cluster> {
  installRuntime();
  const [env, built] = await Promise.all([
    startDevServer({ ...(opts.namespaces ? { extraNamespaces: opts.namespaces } : {}) }),
    bundles ? Promise.resolve(bundles) : Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]).then(([controlPlane, dataPlane]) => ({ controlPlane, dataPlane })),
  ]);
  bundles = built;
  const temporal = { address: env.connection.options.address!, namespace: 'default' };
  const secretKey = SecretBox.generateKeyBase64();
  const secrets = SecretBox.fromBase64(secretKey);
  const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-test-'));
  const running: { shutdown(): Promise<void> }[] = [];
  return {
    env,
    client: env.client,
    ferry: new FerryClient(env.client, secrets),
    secrets,
    secretKey,
    temporal,
    root,
    bundles: built,
    async controlPlane({ namespace, ...config }) {
      const w = await startControlPlaneWorker(ControlPlaneConfigSchema.parse({ ...config, temporal: { ...temporal, ...(namespace ? { namespace } : {}) }, secretKey }), { workflowBundle: built.controlPlane });
      running.push(w);
      return w;
    },
    async dataPlane({ namespace, ...config }) {
      const w = await startDataPlaneWorker(DataPlaneConfigSchema.parse({ ...config, temporal: { ...temporal, ...(namespace ? { namespace } : {}) }, secretKey }), { workflowBundle: built.dataPlane });
      running.push(w);
      return w;
    },
    clientFor(namespace) {
      const client = new Client({ connection: env.connection, namespace });
      return { client, ferry: new FerryClient(client, secrets) };
    },
    async shutdown() {
      for (const w of running.reverse()) await w.shutdown().catch(() => undefined);
      await env.teardown();
      rmSync(root, { recursive: true, force: true });
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
