import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Runtime, DefaultLogger, type LogEntry, type Worker } from '@temporalio/worker';
import type { z } from 'zod';
import { ConfigError, parseConfig } from '../src/config.js';

/** What both worker entry points share: config loading, connections, clean shutdown. */

/** Reads `--config FILE` (or $FERRY_CONFIG) and validates it; a bad file stops start-up with every problem listed. */
export function loadConfigFile<T extends z.ZodType>(schema: T, what: string, argv = process.argv.slice(2)): z.infer<T> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' } }, allowPositionals: true });
  const file = values.config ?? process.env.FERRY_CONFIG;
  if (!file) throw new ConfigError(`no ${what} config: pass --config FILE or set FERRY_CONFIG`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`cannot read ${what} config ${file}: ${(e as Error).message}`);
  }
  return parseConfig(schema, raw, `${what} config ${file}`);
}

export interface Connections {
  native: NativeConnection;
  client: Client;
  /** The converter the client uses; a worker on these connections must use it too (`Worker.create({ dataConverter })`). */
  dataConverter: DataConverter;
  close(): Promise<void>;
}

/**
 * A worker's connections. `dataConverter` (ferry's: `ferryDataConverter(keys)` from src/codec.ts)
 * encrypts every payload the client and the worker send, so both must get it.
 */
export async function connect(temporal: { address: string; namespace: string }, opts: { dataConverter: DataConverter }): Promise<Connections> {
  const native = await NativeConnection.connect({ address: temporal.address });
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection, namespace: temporal.namespace, dataConverter: opts.dataConverter });
  return {
    native,
    client,
    dataConverter: opts.dataConverter,
    async close() {
      await connection.close();
      await native.close();
    },
  };
}

let runtimeInstalled = false;
/** Quieter SDK logs for the CLI entry points (warnings and errors only); `tee` also gets every entry logged (tests scan them). */
export function installRuntime(level: 'WARN' | 'INFO' = 'WARN', tee?: (entry: LogEntry) => void): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const printer = new DefaultLogger(level);
  Runtime.install({
    logger: tee
      ? new DefaultLogger(level, (entry) => {
          tee(entry);
          printer.log(entry.level, entry.message, entry.meta);
        })
      : printer,
  });
}

/** Runs `main` and turns a config error into a clear message and exit code 2 instead of a stack trace. */
export function runMain(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    console.error(e);
    process.exit(1);
  });
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export const isMain = (metaUrl: string): boolean => !!process.argv[1] && metaUrl === new URL(`file://${process.argv[1]}`).href;

/**
 * Resolves once Temporal sees `worker` polling its task queue: from then on a client's liveness
 * check (FerryClient refuses starts nobody would run) finds it. Bounded: a worker that never polls
 * is an error, not a wait forever.
 */
export async function untilPolling(client: Client, worker: Worker, timeoutMs = 60_000): Promise<void> {
  const { namespace, taskQueue, identity } = worker.options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await client.workflowService.describeTaskQueue({ namespace, taskQueue: { name: taskQueue, kind: 1 }, taskQueueType: 1 });
    if (res.pollers?.some((p) => p.identity === identity)) return;
    if (worker.getState() !== 'RUNNING' && worker.getState() !== 'INITIALIZED') throw new Error(`worker on ${taskQueue} stopped before it polled`);
    if (Date.now() > deadline) throw new Error(`worker on ${taskQueue} did not poll within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Runs a worker and returns its stop function. The SDK shuts workers down on SIGINT/SIGTERM by
 * itself; stopping is therefore idempotent: shut down if still running, wait, then release `after`.
 */
export function runWorker(worker: Worker, after: () => Promise<void>): () => Promise<void> {
  const running = worker.run();
  return async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running;
    await after();
  };
}
