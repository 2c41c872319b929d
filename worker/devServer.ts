import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { DataConverter } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SEARCH_ATTRIBUTES } from '../src/searchAttributes.js';
import { serverExecutable } from './temporalCli.js';

/** Every search attribute the workflows set; a dev server registers them at start. */
export { SEARCH_ATTRIBUTES };

export interface DevServerOptions {
  /** SQLite file: state survives a restart. Omit for an in-memory server (tests). */
  dbFile?: string;
  port?: number;
  /** Web UI port; omit for no UI. */
  uiPort?: number;
  namespace?: string;
  /** More namespaces to create (one per connector, as separate organisations would have). */
  extraNamespaces?: string[];
  /** The converter of the environment's client (ferry's codec: `ferryDataConverter(keys)`). */
  dataConverter?: DataConverter;
  /** The codec server the Web UI decodes payloads with (`--ui-codec-endpoint`). */
  uiCodecEndpoint?: string;
}

/** `temporal server start-dev`, embedded: it lives as long as this process. */
export async function startDevServer(opts: DevServerOptions = {}): Promise<TestWorkflowEnvironment> {
  if (opts.dbFile) mkdirSync(path.dirname(opts.dbFile), { recursive: true });
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: serverExecutable(),
      searchAttributes: SEARCH_ATTRIBUTES,
      ...(opts.dbFile ? { dbFilename: opts.dbFile } : {}),
      ...(opts.port ? { port: opts.port } : {}),
      ...(opts.uiPort ? { ui: true, uiPort: opts.uiPort } : {}),
      ...(opts.namespace ? { namespace: opts.namespace } : {}),
      extraArgs: [...(opts.extraNamespaces ?? []).flatMap((n) => ['--namespace', n]), ...(opts.uiCodecEndpoint ? ['--ui-codec-endpoint', opts.uiCodecEndpoint] : [])],
      log: { format: 'pretty', level: 'warn' },
    },
    ...(opts.dataConverter ? { client: { dataConverter: opts.dataConverter } } : {}),
  });
}
