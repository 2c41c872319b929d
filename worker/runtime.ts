import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Runtime, type Worker, type WorkerOptions } from '@temporalio/worker';
import type { z } from 'zod';
import { connectionOptions, describeConnection, rootMessage, TemporalConnectionSchema, type TemporalConnection, type TemporalConnectionInput } from '../src/connection.js';
import { ConfigError, type WorkerRun } from '../src/config.js';
export { rootMessage };
import { durationMs } from '../src/settings.js';
import { startHealthServer, type Readiness } from './health.js';
import { createLogger, PinoSdkLogger, type FerryLogger } from './logging.js';
import { loadWorkerConfig } from './workerConfig.js';

/** What both worker entry points share: config, connections with retry, logs, metrics, probes, clean shutdown. */

export interface Connections {
  native: NativeConnection;
  connection: Connection;
  client: Client;
  temporal: TemporalConnection;
  /** The converter the client uses; a worker on these connections must use it too (`Worker.create({ dataConverter })`). */
  dataConverter: DataConverter;
  close(): Promise<void>;
}

export interface ConnectOptions {
  /** ferry's: `ferryDataConverter(keys)` from src/codec.ts. It encrypts every payload the client and the worker send, so both must get it. */
  dataConverter: DataConverter;
  /** Between attempts: doubled from `initialMs` up to `maxMs`. Attempts: unbounded unless `maxAttempts`. */
  retry?: { initialMs?: number; maxMs?: number; maxAttempts?: number };
  /** One line per failed attempt. */
  log?: FerryLogger;
  /** Stops retrying (shutdown while still connecting). */
  signal?: AbortSignal;
}

export class ConnectAbortedError extends Error {
  constructor() {
    super('stopped while connecting to Temporal');
    this.name = 'ConnectAbortedError';
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new ConnectAbortedError());
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ConnectAbortedError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });


/**
 * Connects a worker's native connection and a client to Temporal. While the server is unreachable
 * it retries with capped exponential backoff (1 s doubling to 30 s, for ever unless `maxAttempts`),
 * logging one line per attempt: a worker started before its server waits for it.
 */
export async function connect(temporalInput: TemporalConnectionInput, opts: ConnectOptions): Promise<Connections> {
  const temporal = TemporalConnectionSchema.parse(temporalInput);
  const options = connectionOptions(temporal);
  const initialMs = opts.retry?.initialMs ?? 1000;
  const maxMs = opts.retry?.maxMs ?? 30_000;
  const maxAttempts = opts.retry?.maxAttempts ?? Infinity;
  for (let attempt = 1; ; attempt++) {
    let native: NativeConnection | undefined;
    try {
      native = await NativeConnection.connect(options);
      const connection = await Connection.connect({ ...options, connectTimeout: '10s' });
      const client = new Client({ connection, namespace: temporal.namespace, dataConverter: opts.dataConverter });
      if (attempt > 1) opts.log?.info({ attempt, temporal: describeConnection(temporal) }, 'connected to Temporal');
      return {
        native,
        connection,
        client,
        temporal,
        dataConverter: opts.dataConverter,
        async close() {
          await connection.close();
          await native!.close();
        },
      };
    } catch (e) {
      await native?.close().catch(() => undefined);
      if (attempt >= maxAttempts) throw e;
      const delay = Math.min(maxMs, initialMs * 2 ** Math.min(attempt - 1, 20));
      opts.log?.warn({ attempt, retryInMs: delay, temporal: describeConnection(temporal), reason: rootMessage(e) }, 'Temporal unreachable; retrying');
      await sleep(delay, opts.signal);
    }
  }
}

/** Worker options every ferry worker shares: drain on shutdown, Worker Versioning, bundled workflows. */
export function commonWorkerOptions(run: WorkerRun | undefined): Partial<WorkerOptions> {
  if (!run) return {};
  const grace = durationMs(run.shutdownGraceTime);
  return {
    shutdownGraceTime: grace,
    // a worker whose activities ignore cancellation still ends
    shutdownForceTime: grace + 30_000,
    ...(run.deployment
      ? {
          workerDeploymentOptions: run.deployment.useVersioning
            ? {
                version: { deploymentName: run.deployment.name, buildId: run.deployment.buildId },
                useWorkerVersioning: true,
                defaultVersioningBehavior: run.deployment.defaultVersioningBehavior,
              }
            : { version: { deploymentName: run.deployment.name, buildId: run.deployment.buildId }, useWorkerVersioning: false },
        }
      : {}),
  };
}

/** Ready = the worker runs (polls) and its server answers a health check. */
export async function workerReadiness(worker: Worker, connection: Connection): Promise<Readiness> {
  const state = worker.getState();
  if (state !== 'RUNNING') return { ready: false, state: state === 'STOPPING' || state === 'DRAINING' || state === 'DRAINED' ? 'draining' : state.toLowerCase() };
  try {
    await connection.withDeadline(Date.now() + 2000, () => connection.healthService.check({}));
    return { ready: true, state: 'polling' };
  } catch (e) {
    return { ready: false, state: 'reconnecting', detail: rootMessage(e) };
  }
}

let runtimeInstalled = false;
/** In-process use (dev, tests): SDK logs at WARN and above, as JSON lines through pino; `tee` also gets every entry (tests scan them). */
export function installRuntime(level: 'WARN' | 'INFO' = 'WARN', tee?: ConstructorParameters<typeof PinoSdkLogger>[1]): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const logger = createLogger({ level: level === 'WARN' ? 'warn' : 'info', name: 'ferry' });
  // the embedding program handles signals (and stops its workers in order)
  Runtime.install({ logger: new PinoSdkLogger(logger, tee), shutdownSignals: [] });
}

/** A worker process: pino logs (the SDK's routed into them) and, when configured, the Prometheus endpoint. */
function installWorkerRuntime(run: WorkerRun, logger: FerryLogger): void {
  runtimeInstalled = true;
  Runtime.install({
    logger: new PinoSdkLogger(logger),
    // signals are ours: the first drains, the second stops at once
    shutdownSignals: [],
    telemetryOptions: {
      logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
      ...(run.metricsBindAddress ? { metrics: { prometheus: { bindAddress: run.metricsBindAddress } } } : {}),
    },
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

/** True in the entry point the process was started with (also through a symlinked bin, node_modules/.bin/…). */
export function isMain(metaUrl: string): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(path.resolve(process.argv[1])) === realpathSync(fileURLToPath(metaUrl));
  } catch {
    return false;
  }
}

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
 * Runs a worker and returns its stop function (idempotent): stop polling, let running activities
 * go on for `shutdownGraceTime`, then cancel them, wait, and release `after`.
 */
export function runWorker(worker: Worker, after: () => Promise<void>): () => Promise<void> {
  const running = worker.run();
  let stopping: Promise<void> | undefined;
  return () =>
    (stopping ??= (async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      try {
        await running;
      } finally {
        await after();
      }
    })());
}

export interface RunningWorkerBase {
  readiness(): Promise<Readiness>;
  shutdown(): Promise<void>;
}

export interface WorkerStartContext {
  log: FerryLogger;
  /** Aborted by SIGTERM/SIGINT while still connecting. */
  signal: AbortSignal;
}

export interface WorkerProcessSpec<S extends z.ZodType, R extends RunningWorkerBase> {
  /** `control-plane` or `data-plane`. */
  kind: string;
  schema: S;
  help: string;
  start(config: z.infer<S>, ctx: WorkerStartContext): Promise<R>;
  /** The line logged once it polls (contains "polling"). */
  describe(running: R): { message: string; fields: Record<string, unknown> };
}

export const WORKER_ENV_HELP = `Configuration: a JSON file (--config FILE or $FERRY_CONFIG) or inline JSON ($FERRY_CONFIG_JSON),
then one variable per setting: FERRY_<PATH> with path segments in SCREAMING_SNAKE_CASE joined by
"__" (FERRY_SECRET_KEY, FERRY_WORKER__HEALTH__PORT=8081); FERRY_<PATH>_FILE reads the value from a file.
Temporal: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH,
TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME,
TEMPORAL_PROFILE and TEMPORAL_CONFIG_FILE (temporal.toml), under the config's own "temporal" block.

Signals: SIGTERM/SIGINT drain (stop polling, running activities get worker.shutdownGraceTime, 30s
by default, then are cancelled and resume on the next worker); a second signal exits at once.

Exit codes: 0 stopped cleanly, 1 failed, 2 bad usage or configuration.`;

/** The `main` of a worker entry point: --help, config, logs, probes, connect (with retry), drain on SIGTERM. */
export function runWorkerProcess<S extends z.ZodType, R extends RunningWorkerBase>(spec: WorkerProcessSpec<S, R>): void {
  let args;
  try {
    args = parseArgs({ args: process.argv.slice(2), options: { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${spec.help}`);
    process.exit(2);
  }
  if (args.values.help) {
    console.log(spec.help);
    process.exit(0);
  }
  let loaded;
  try {
    loaded = loadWorkerConfig(spec.schema, spec.kind, { ...(args.values.config ? { configFile: args.values.config } : {}) });
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : rootMessage(e));
    process.exit(2);
  }
  const config = loaded.config as z.infer<S> & { worker: WorkerRun };
  const log = createLogger({ level: config.worker.logLevel, name: `ferry-${spec.kind}` });
  for (const w of loaded.warnings) log.warn(w);
  installWorkerRuntime(config.worker, log);

  const abort = new AbortController();
  let running: R | undefined;
  let draining = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (draining || !running) {
      // second signal, or still connecting: stop now
      if (!running && !draining) {
        draining = true;
        log.info({ signal }, 'stopping (not connected yet)');
        abort.abort();
        return;
      }
      log.warn({ signal }, 'second signal: exiting without waiting for the drain');
      process.exit(1);
    }
    draining = true;
    log.info({ signal, shutdownGraceTime: config.worker.shutdownGraceTime }, 'draining: polling stopped, running activities get the grace time');
    running.shutdown().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (e: unknown) => {
        log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  void (async () => {
    const health = await startHealthServer({
      host: config.worker.health.host,
      port: config.worker.health.port,
      name: spec.kind,
      readiness: async () => (running ? running.readiness() : { ready: false, state: abort.signal.aborted ? 'stopping' : 'connecting' }),
    });
    log.info({ health: health.url, metrics: config.worker.metricsBindAddress ? `http://${config.worker.metricsBindAddress}/metrics` : null }, 'probes up: /healthz, /readyz');
    try {
      running = await spec.start(config, { log, signal: abort.signal });
    } catch (e) {
      if (e instanceof ConnectAbortedError) {
        await health.close();
        process.exit(0);
      }
      if (e instanceof ConfigError) {
        // keys and settings checked at start (a missing key ring, say): a usage error, not a crash
        console.error(e.message);
        process.exit(2);
      }
      throw e;
    }
    const { message, fields } = spec.describe(running);
    log.info(fields, message);
  })().catch((e: unknown) => {
    log.error({ err: e }, 'worker failed');
    process.exit(1);
  });
}
