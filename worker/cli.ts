#!/usr/bin/env node
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Client,
  Connection,
  isGrpcDeadlineError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import { CommandRefusedError, FerryClient, InvalidRequestError, TransferRequestSchema, type TransferRequest } from '../src/client.js';
import {
  ConnectionSettingsError,
  connectionOptions,
  describeConnection,
  resolveTemporalConnection,
  rootMessage,
  webUiBase,
  workflowUrl,
  type TemporalConnection,
  type TemporalConnectionInput,
} from '../src/connection.js';
import { ferryDataConverter } from '../src/codec.js';
import { ConfigError } from '../src/config.js';
import { endpointUrl, type DataAddress } from '../src/DataAddress.js';
import type { TransferDetails, TransferListFilter, TransferSummary } from '../src/inspect.js';
import { Keyring, KEY_VARIABLES, keyringFromEnv, newKeyId } from '../src/keys.js';
import { SEARCH_ATTRIBUTES } from '../src/searchAttributes.js';
import { TransferStateAttr, type TransferProcessStatus } from '../src/TransferProcess.js';
import { RemoteCodec } from './codecServer.js';
import { REPO_ROOT } from './temporalCli.js';

/**
 * `ferry` (`npx ferry …`, or `npm run ferry -- …` in the repository): start, list, inspect, follow
 * and steer transfers, and set namespaces up, from a shell.
 *
 * Exit codes: 0 ok, 1 failure (transfer not COMPLETED, not found, server unreachable),
 * 2 usage or invalid input (nothing was started), 3 a command the transfer refused.
 */

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, REFUSED: 3 } as const;

/** A mistake of the user's: its message is printed (with a hint), never a stack trace. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** An expected failure with a message that says it all (exit 1, no stack trace). */
class Failure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Failure';
  }
}

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Progress bars redraw in place only on a terminal. */
  isTTY?: boolean;
  /** For the live progress line on a terminal. */
  write?: (text: string) => void;
}

interface GlobalOptions {
  codecKeysFile?: string;
  codecEndpoint?: string;
  codecAuth?: string;
  address?: string;
  namespace?: string;
  profile?: string;
  envFile?: string;
  tls?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsServerName?: string;
  ui?: string;
  json?: boolean;
}

const EXIT_CODES_HELP = `Exit codes: 0 ok; 1 failed (transfer ended other than COMPLETED for wait/follow, not found,
server unreachable); 2 usage or invalid input (nothing was changed); 3 the transfer refused the command.`;

const CONNECTION_HELP = `Connection: Temporal's conventions. --address/--namespace/--tls-* flags, else TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* variables, else the profile (--profile or
TEMPORAL_PROFILE) of temporal.toml (--env-file or TEMPORAL_CONFIG_FILE, default
~/.config/temporalio/temporal.toml), else localhost:7233 and namespace "default".
Web UI links: --ui URL, else $FERRY_UI_URL, else the dev server's (address port + 1000).`;

// ---------------------------------------------------------------------------------------------
// Connection

interface Session {
  ferry: FerryClient;
  connection: Connection;
  namespace: string;
  temporal: TemporalConnection;
  ui: string;
  close(): Promise<void>;
}

/** The connection the flags and the environment describe (no network yet). */
export function cliConnection(g: GlobalOptions, env: NodeJS.ProcessEnv): TemporalConnection {
  const tlsFlags = Object.fromEntries(
    Object.entries({ clientCertPath: g.tlsCert, clientKeyPath: g.tlsKey, serverCaCertPath: g.tlsCa, serverName: g.tlsServerName }).filter(([, v]) => v !== undefined),
  );
  const explicit: Partial<TemporalConnectionInput> = {
    ...(g.address !== undefined ? { address: g.address } : {}),
    ...(g.namespace !== undefined ? { namespace: g.namespace } : {}),
    ...(Object.keys(tlsFlags).length > 0 ? { tls: tlsFlags } : g.tls !== undefined ? { tls: g.tls } : {}),
  };
  for (const [k, v] of Object.entries(explicit)) if (v === '') throw new UsageError(`--${k} must not be empty`);
  try {
    return resolveTemporalConnection({ explicit, ...(g.profile ? { profile: g.profile } : {}), ...(g.envFile ? { configFile: g.envFile } : {}), env });
  } catch (e) {
    if (e instanceof ConnectionSettingsError) throw new UsageError(e.message);
    throw e;
  }
}

/**
 * A session. Every payload is encrypted, so reading or starting a transfer needs the connector's
 * codec keys; listing (search attributes) and namespace setup do not (`keys: 'optional'`).
 */
async function openSession(g: GlobalOptions, env: NodeJS.ProcessEnv, keys: 'required' | 'optional' = 'required'): Promise<Session> {
  const temporal = cliConnection(g, env);
  const codec = codecOf(g, env, temporal.namespace);
  if (!codec && keys === 'required') {
    throw new UsageError(
      `no payload codec keys: every payload is encrypted, so ferry needs the connector's keys. Pass --codec-keys-file FILE or set ${KEY_VARIABLES.codec} or ${KEY_VARIABLES.codec}_FILE (or use a codec server: --codec-endpoint URL --codec-auth "Bearer <token>")`,
    );
  }
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...connectionOptions(temporal), connectTimeout: '5s' });
  } catch (e) {
    if (e instanceof ConnectionSettingsError) throw new UsageError(e.message);
    throw new Failure(`cannot reach Temporal at ${describeConnection(temporal)}: ${rootMessage(e)}`);
  }
  const client = new Client({ connection, namespace: temporal.namespace, ...(codec ? { dataConverter: ferryDataConverter(codec) } : {}) });
  const ui = (g.ui ?? webUiBase(temporal, env)).replace(/\/+$/, '');
  return { ferry: new FerryClient(client), connection, namespace: temporal.namespace, temporal, ui, close: () => connection.close() };
}

async function withSession<T>(g: GlobalOptions, env: NodeJS.ProcessEnv, fn: (s: Session) => Promise<T>, keys: 'required' | 'optional' = 'required'): Promise<T> {
  const session = await openSession(g, env, keys);
  try {
    return await fn(session);
  } finally {
    await session.close().catch(() => undefined);
  }
}

function seconds(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number of seconds, got ${JSON.stringify(value)}`);
  return n;
}

/** Runs `fn` with a gRPC deadline; `undefined` means none. */
function deadline<T>(s: Session, timeoutSec: number | undefined, fn: () => Promise<T>): Promise<T> {
  return timeoutSec === undefined ? fn() : s.connection.withDeadline(Date.now() + timeoutSec * 1000, fn);
}

function notFound(connectorId: string, processId: string, namespace: string): Failure {
  return new Failure(`no transfer ${processId} of connector ${connectorId} in namespace ${namespace}`);
}


// ---------------------------------------------------------------------------------------------
// Keys

/** Where `npm run dev` keeps its generated keys. */
export function devKeysDir(env: NodeJS.ProcessEnv): string {
  return path.join(path.resolve(env.FERRY_DATA_DIR ?? path.join(REPO_ROOT, '.data')), 'keys');
}

/** The codec: a codec server (`--codec-endpoint`, $FERRY_CODEC_ENDPOINT), or keys (`codecKeys`). */
function codecOf(g: GlobalOptions, env: NodeJS.ProcessEnv, namespace: string): Keyring | RemoteCodec | undefined {
  const endpoint = g.codecEndpoint ?? env.FERRY_CODEC_ENDPOINT;
  if (!endpoint) return codecKeys(g.codecKeysFile, env);
  if (g.codecKeysFile) throw new UsageError('give either --codec-keys-file or --codec-endpoint, not both');
  if (!URL.canParse(endpoint) || !/^https?:$/.test(new URL(endpoint).protocol)) throw new UsageError(`--codec-endpoint must be an http(s) URL`);
  const authorization = g.codecAuth ?? env.FERRY_CODEC_AUTH;
  return new RemoteCodec(endpoint, { namespace, ...(authorization ? { authorization } : {}) });
}

/** The payload codec keys: `--codec-keys-file`, else FERRY_CODEC_KEYS(_FILE), else the dev keys when they exist. */
function codecKeys(explicit: string | undefined, env: NodeJS.ProcessEnv): Keyring | undefined {
  try {
    if (explicit !== undefined) return keyringFromEnv(KEY_VARIABLES.codec, { [`${KEY_VARIABLES.codec}_FILE`]: explicit })!;
    const fromEnv = keyringFromEnv(KEY_VARIABLES.codec, env);
    if (fromEnv) return fromEnv;
    const dev = path.join(devKeysDir(env), 'codec.keys');
    if (existsSync(dev)) return keyringFromEnv(KEY_VARIABLES.codec, { [`${KEY_VARIABLES.codec}_FILE`]: dev })!;
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
  return undefined;
}

function parseJsonOption(value: string, name: string): unknown {
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new UsageError(`--${name} is not valid JSON: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting

function formatAddress(a: DataAddress | undefined): string {
  if (!a) return '-';
  const props = a.endpointProperties.map((p) => `${p.name}=${p.value}`);
  return `${a.endpointType} ${a.endpoint}${props.length > 0 ? `  (${props.join(', ')})` : ''}`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

function keyValues(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function statusRows(st: TransferProcessStatus): [string, string][] {
  const rows: [string, string][] = [
    ['process', st.processId],
    ['connector', st.connectorId],
    ['state', `${st.state} (${st.stateCode})`],
    ['role', st.role],
    ['counterparty', `${st.counterpartyAddress}${st.counterpartyPid ? `  (process ${st.counterpartyPid})` : ''}`],
    ['agreement', st.agreementId],
    ['asset', st.assetId],
    ['type', st.transferType],
    ['data plane', st.dataPlane ? `${st.dataPlane.id}  (queue ${st.dataPlane.taskQueue})` : '-'],
    ['data flow', st.dataFlowId],
    ['destination', formatAddress(st.dataDestination)],
  ];
  if (st.edr) rows.push(['edr', formatAddress(st.edr)]);
  if (st.reason) rows.push(['reason', st.reason]);
  if (st.error) rows.push(['error', st.error]);
  return rows;
}

const timeline = (st: TransferProcessStatus): string[] => table(['AT', 'STATE', 'NOTE'], st.history.map((h) => [h.at, h.state, h.note ?? ''])).map((l) => `  ${l}`);

export function formatStatus(st: TransferProcessStatus): string {
  return [...keyValues(statusRows(st)), '', 'history:', ...timeline(st)].join('\n');
}

function formatFlow(label: string, flow: TransferDetails['dataFlow']): string[] {
  if (!flow) return [];
  const lines: string[] = [];
  const st = flow.status;
  const exec = flow.execution ? `workflow ${flow.execution.workflowId} ${flow.execution.status}` : '';
  lines.push(`${label}: ${st ? `${st.state} on ${st.instanceId}` : '(no status)'}${exec ? `  (${exec})` : ''}`);
  if (flow.error) lines.push(`  ${flow.error}`);
  if (st) {
    if (st.source) lines.push(`  source       ${formatAddress(st.source)}`);
    if (st.destination) lines.push(`  destination  ${formatAddress(st.destination)}`);
    for (const r of st.resources) {
      const what = Object.entries(r.resource).map(([k, v]) => `${k}=${v}`).join(', ');
      lines.push(`  resource     ${r.provisioner} (${r.side}) ${r.released ? 'released' : r.ready ? 'ready' : 'pending'}${what ? `  ${what}` : ''}`);
    }
    if (typeof st.bytesTransferred === 'number') lines.push(`  moved        ${formatBytes(st.bytesTransferred)}${st.sha256 ? `  sha256 ${st.sha256}` : ''}`);
    if (st.reason) lines.push(`  reason       ${st.reason}`);
    if (st.error) lines.push(`  error        ${st.error}`);
  }
  return lines;
}

export function formatDetails(d: TransferDetails, ui: string, namespace: string): string {
  const st = d.status;
  const rows = statusRows(st);
  rows.push(['workflow', `${d.execution.status}, ${d.execution.historyLength} events, started ${d.execution.startTime}${d.execution.closeTime ? `, closed ${d.execution.closeTime}` : ''}`]);
  rows.push(['web ui', workflowUrl(ui, namespace, d.execution.workflowId)]);
  if (d.progress) {
    const total = d.progress.totalBytes !== undefined ? ` of ${formatBytes(d.progress.totalBytes)}` : '';
    rows.push(['bytes', `${formatBytes(d.progress.bytes)}${total}  (${d.progress.from === 'heartbeat' ? 'running transfer, last heartbeat' : 'data flow status'} of ${d.progress.flowWorkflowId})`]);
  }
  const head = keyValues(rows);
  head.push('', ...formatFlow('data flow', d.dataFlow));
  if (d.counterpartyDataFlow) head.push(...formatFlow("counterparty's data flow", d.counterpartyDataFlow));
  head.push('', d.pendingActivities.length > 0 ? 'pending activities:' : 'pending activities: none');
  if (d.pendingActivities.length > 0) {
    head.push(
      ...table(
        ['WORKFLOW', 'ACTIVITY', 'STATE', 'ATTEMPT', 'NEXT ATTEMPT', 'LAST FAILURE'],
        d.pendingActivities.map((a) => [
          a.workflowId,
          a.activityType,
          a.state,
          `${a.attempt}${a.maximumAttempts ? `/${a.maximumAttempts}` : ''}`,
          a.nextAttemptScheduleTime ?? '-',
          a.lastFailure ?? '-',
        ]),
      ).map((l) => `  ${l}`),
    );
  }
  head.push('', 'timeline:', ...timeline(st));
  return head.join('\n');
}

function formatList(rows: TransferSummary[]): string[] {
  if (rows.length === 0) return ['no transfers match'];
  return table(
    ['CONNECTOR', 'PROCESS', 'ROLE', 'TYPE', 'STATE', 'COUNTERPARTY', 'AGREEMENT', 'ASSET', 'STARTED', 'WORKFLOW'],
    rows.map((r) => [r.connectorId, r.processId, r.role ?? '-', r.type ?? '-', r.state ?? '-', r.counterparty ?? '-', r.agreement ?? '-', r.asset ?? '-', r.startTime.replace(/\.\d+Z$/, 'Z'), r.executionStatus]),
  );
}

// ---------------------------------------------------------------------------------------------
// Commands

interface Ctx {
  io: Io;
  env: NodeJS.ProcessEnv;
  globals(): GlobalOptions;
  /** Set by the action: the process's exit code. */
  code: number;
}

/** After a command that changed a transfer: the state it is in now (best effort: the worker answers the query). */
async function printStateAfter(ctx: Ctx, s: Session, connectorId: string, processId: string, extra: Record<string, unknown>): Promise<void> {
  let why = '';
  const st = await deadline(s, 5, () => s.ferry.status(connectorId, processId)).catch((e: unknown) => {
    why = isGrpcDeadlineError(e) || /cancelled/i.test(rootMessage(e)) ? 'the control-plane worker did not answer its status query within 5s' : rootMessage(e);
    return undefined;
  });
  // without the worker's answer, the server still knows the state the process last published
  const published = st
    ? undefined
    : await deadline(s, 5, () => s.ferry.handle(connectorId, processId).describe())
        .then((d) => d.typedSearchAttributes.get(TransferStateAttr) as string | undefined)
        .catch(() => undefined);
  const url = workflowUrl(s.ui, s.namespace, `transfer-${connectorId}-${processId}`);
  if (ctx.globals().json) {
    ctx.io.out(JSON.stringify({ ...extra, connectorId, processId, namespace: s.namespace, url, state: st?.state ?? published ?? null, status: st ?? null }, null, 2));
    return;
  }
  ctx.io.out(
    st
      ? `state now: ${st.state}${st.history.at(-1)?.note ? ` (${st.history.at(-1)!.note})` : ''}`
      : published
        ? `state now: ${published} (its FerryTransferState; ${why})`
        : `state now: unknown (${why})`,
  );
  ctx.io.out(`web ui: ${url}`);
}

function startAction(ctx: Ctx) {
  return async (o: Record<string, string | undefined>) => {
    const missing = ['connector', 'counterparty', 'agreement', 'asset'].filter((n) => o[n] === undefined);
    const pull = (o.type ?? '').endsWith('-PULL');
    if (!pull && o.dest === undefined && o.destJson === undefined) missing.push('dest');
    if (missing.length > 0) throw new UsageError(`missing ${missing.map((n) => `--${n}`).join(', ')}`);
    if (o.dest !== undefined && o.destJson !== undefined) throw new UsageError('give either --dest or --dest-json, not both');

    const dataDestination = (o.destJson !== undefined ? parseJsonOption(o.destJson, 'dest-json') : o.dest !== undefined ? { endpointType: 'File', endpoint: o.dest } : undefined) as DataAddress | undefined;
    // Unchecked here: TransferRequestSchema reports every problem at once below.
    const request = {
      connectorId: o.connector,
      counterpartyAddress: o.counterparty,
      agreementId: o.agreement,
      assetId: o.asset,
      transferType: o.type,
      ...(dataDestination !== undefined ? { dataDestination } : {}),
      ...(o.processId !== undefined ? { processId: o.processId } : {}),
      ...(o.dataPlane !== undefined ? { dataPlaneId: o.dataPlane } : {}),
      ...(o.settingsJson !== undefined ? { settings: parseJsonOption(o.settingsJson, 'settings-json') } : {}),
    } as TransferRequest;

    // Checked before connecting, so a bad request fails the same way whether or not the server is up.
    const parsed = TransferRequestSchema.safeParse(request);
    if (!parsed.success) throw new InvalidRequestError(`invalid transfer request:\n${z.prettifyError(parsed.error)}`);

    await withSession(ctx.globals(), ctx.env, async (s) => {
      const started = await s.ferry.startTransfer(request);
      if (!ctx.globals().json) {
        ctx.io.out(`transfer ${started.processId} started`);
        ctx.io.out(`  process id   ${started.processId}`);
        ctx.io.out(`  workflow id  ${started.workflowId}`);
      }
      await printStateAfter(ctx, s, started.connectorId, started.processId, { command: 'start', workflowId: started.workflowId });
      if (!ctx.globals().json) ctx.io.out(`follow it with: ferry transfer follow ${started.connectorId} ${started.processId}`);
    });
  };
}

function addStart(parent: Command, ctx: Ctx): void {
  parent
    .command('start')
    .summary('start a consumer transfer')
    .description('Starts a consumer TransferProcess. The request is checked in full first: an invalid one starts nothing (exit 2).')
    .option('--connector <id>', 'this (consumer) connector')
    .option('--counterparty <addr>', "the provider's connector, e.g. temporal://provider")
    .option('--agreement <id>', 'contract agreement id')
    .option('--asset <id>', 'asset id')
    .option('--type <type>', 'File-PUSH, HttpData-PUSH or HttpData-PULL (a pull takes no destination: fetch with `ferry edr`)', 'File-PUSH')
    .option('--dest <path>', "File destination: a relative path inside the data plane's file root")
    .option('--dest-json <json>', 'any destination as a DataAddress: {"endpointType":…,"endpoint":…,"endpointProperties":[…]}')
    .option('--process-id <id>', 'process id (default: random); the same id twice reaches the same transfer')
    .option('--data-plane <id>', 'pin the transfer to one data-plane instance')
    .option('--settings-json <json>', 'per-transfer setting overrides, e.g. {"requestedTimeout":"1m"}')
    .action(startAction(ctx));
}

function processArgs(cmd: Command): Command {
  return cmd.argument('<connector>', 'the connector whose process it is').argument('<processId>', "the connector's process id");
}

function addShow(parent: Command, ctx: Ctx, name: string, summary: string): void {
  processArgs(parent.command(name))
    .summary(summary)
    .description(
      "Shows a transfer: state and timeline, role, counterparty, data plane, destination (credentials masked), its DataFlow's state and resources, bytes moved (from the DataFlow, or the running transfer's heartbeat) and pending activities with their retries. Needs the connector's control-plane worker to answer the status query.",
    )
    .option('--timeout <seconds>', "how long to wait for the worker's answer", '10')
    .action(async (connectorId: string, processId: string, o: { timeout?: string }) => {
      const timeout = seconds(o.timeout, 'timeout');
      await withSession(ctx.globals(), ctx.env, async (s) => {
        let d: TransferDetails;
        try {
          d = await deadline(s, timeout, () => s.ferry.show(connectorId, processId));
        } catch (e) {
          if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
          if (isGrpcDeadlineError(e)) {
            const execution = await deadline(s, 5, () => s.ferry.handle(connectorId, processId).describe()).catch(() => undefined);
            throw new Failure(
              `no answer to the status query within ${timeout}s: is the control-plane worker of connector ${connectorId} running?` +
                (execution ? ` (workflow ${execution.workflowId} is ${execution.status.name})` : ''),
            );
          }
          throw e;
        }
        if (ctx.globals().json) ctx.io.out(JSON.stringify({ ...d, url: workflowUrl(s.ui, s.namespace, d.execution.workflowId) }, null, 2));
        else ctx.io.out(formatDetails(d, s.ui, s.namespace));
      });
    });
}

const csv = (value: string, previous: string[] = []): string[] => [...previous, ...value.split(',').map((v) => v.trim()).filter(Boolean)];

function addList(parent: Command, ctx: Ctx): void {
  parent
    .command('list')
    .alias('ls')
    .summary('list transfers (visibility query on the search attributes)')
    .description('Lists TransferProcesses, newest first, through a visibility query on ferry\'s search attributes (the query is printed with --show-query, to paste into the Web UI).')
    .option('--connector <id>', "only this connector's processes")
    .option('--state <states>', 'TransferProcess states, comma separated (e.g. STARTED,SUSPENDED)', csv)
    .addOption(
      new Option('--role <role>', 'CONSUMER or PROVIDER').argParser((v) => {
        const role = v.toUpperCase();
        if (role !== 'CONSUMER' && role !== 'PROVIDER') throw new InvalidArgumentError('Allowed choices are CONSUMER, PROVIDER.');
        return role;
      }),
    )
    .option('--counterparty <addr>', 'counterparty address (temporal://provider, https://…/dsp)')
    .option('--type <type>', 'transfer type (File-PUSH, HttpData-PUSH, HttpData-PULL)')
    .option('--agreement <id>', 'agreement id')
    .option('--asset <id>', 'asset id')
    .addOption(new Option('--status <status>', 'running or ended workflows only').choices(['running', 'closed']))
    .option('--limit <n>', 'at most this many', '100')
    .option('--show-query', 'print the visibility query too')
    .action(async (o: Record<string, string | string[] | boolean | undefined>) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit <= 0) throw new UsageError(`--limit must be a positive integer, got ${JSON.stringify(o.limit)}`);
      const filter: TransferListFilter = {
        limit,
        ...(o.connector ? { connectorId: o.connector as string } : {}),
        ...(o.state ? { state: (o.state as string[]).map((s) => s.toUpperCase()) } : {}),
        ...(o.role ? { role: o.role as 'CONSUMER' | 'PROVIDER' } : {}),
        ...(o.counterparty ? { counterparty: o.counterparty as string } : {}),
        ...(o.type ? { type: o.type as string } : {}),
        ...(o.agreement ? { agreement: o.agreement as string } : {}),
        ...(o.asset ? { asset: o.asset as string } : {}),
        ...(o.status ? { status: o.status as 'running' | 'closed' } : {}),
      };
      const { listQuery, TransferListFilterSchema } = await import('../src/inspect.js');
      const checked = TransferListFilterSchema.safeParse(filter);
      if (!checked.success) throw new UsageError(`invalid filter:\n${z.prettifyError(checked.error)}`);
      await withSession(
        ctx.globals(),
        ctx.env,
        async (s) => {
          const rows = await s.ferry.list(filter);
          if (ctx.globals().json) {
            ctx.io.out(JSON.stringify({ namespace: s.namespace, query: listQuery(filter), transfers: rows }, null, 2));
            return;
          }
          if (o.showQuery) ctx.io.out(`query: ${listQuery(filter)}\n`);
          for (const line of formatList(rows)) ctx.io.out(line);
        },
        // search attributes are not payloads: listing needs no keys
        'optional',
      );
    });
}

/** A live view of a transfer: polls `show` until a final state. */
function addFollow(parent: Command, ctx: Ctx): void {
  processArgs(parent.command('follow'))
    .summary('follow a transfer live until it ends (bytes, rate, ETA)')
    .description(
      'Polls the transfer and shows its state and a progress bar (bytes, rate, ETA when the size is known) until it reaches a final state. On a terminal the bar redraws in place; elsewhere (a pipe, CI) it prints one line per change, at most every 5 s. With --json, one JSON object per line. Exit 0 when it ends COMPLETED, 1 otherwise.',
    )
    .option('--interval <seconds>', 'how often to look', '1')
    .option('--timeout <seconds>', 'give up after this long (exit 1)')
    .action(async (connectorId: string, processId: string, o: { interval?: string; timeout?: string }) => {
      const interval = seconds(o.interval, 'interval')!;
      const timeout = seconds(o.timeout, 'timeout');
      await withSession(ctx.globals(), ctx.env, async (s) => {
        const json = !!ctx.globals().json;
        const progress = new ProgressView(ctx.io, json);
        const until = timeout === undefined ? Infinity : Date.now() + timeout * 1000;
        for (;;) {
          let d: TransferDetails | undefined;
          try {
            d = await deadline(s, 10, () => s.ferry.show(connectorId, processId));
          } catch (e) {
            if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
            progress.problem(`no answer (${rootMessage(e)}); trying again`);
          }
          if (d) {
            progress.update(d);
            if (d.final) {
              progress.done(d);
              ctx.code = d.status.state === 'COMPLETED' ? EXIT.OK : EXIT.FAILED;
              return;
            }
          }
          if (Date.now() >= until) {
            progress.done(d);
            throw new Failure(`transfer ${processId} did not end within ${timeout}s`);
          }
          await new Promise((r) => setTimeout(r, interval * 1000));
        }
      });
    });
}

/** Renders follow's progress: a redrawn line on a terminal, change lines elsewhere, NDJSON with --json. */
export class ProgressView {
  private lastState?: string;
  private lastBytes?: number;
  private lastLineAt = 0;
  private samples: { at: number; bytes: number }[] = [];
  private drawn = false;

  constructor(
    private readonly io: Io,
    private readonly json: boolean,
    private readonly now: () => number = Date.now,
  ) {}

  /** Bytes per second over the last ~10 s of samples. */
  rate(): number | undefined {
    if (this.samples.length < 2) return undefined;
    const first = this.samples[0]!;
    const last = this.samples.at(-1)!;
    const dt = (last.at - first.at) / 1000;
    return dt > 0 ? Math.max(0, (last.bytes - first.bytes) / dt) : undefined;
  }

  line(d: TransferDetails): string {
    const p = d.progress;
    const parts = [`${d.status.state}`];
    if (p) {
      const rate = this.rate();
      if (p.totalBytes !== undefined && p.totalBytes > 0) {
        const ratio = Math.min(1, p.bytes / p.totalBytes);
        const width = 24;
        const filled = Math.round(ratio * width);
        parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%`);
        parts.push(`${formatBytes(p.bytes)}/${formatBytes(p.totalBytes)}`);
        if (rate !== undefined) parts.push(`${formatBytes(rate)}/s`, `ETA ${rate > 0 ? formatDuration((p.totalBytes - p.bytes) / rate) : '?'}`);
      } else {
        parts.push(formatBytes(p.bytes));
        if (rate !== undefined) parts.push(`${formatBytes(rate)}/s`);
      }
    }
    const waiting = d.pendingActivities.find((a) => a.attempt > 1);
    if (waiting) parts.push(`(${waiting.activityType} attempt ${waiting.attempt}${waiting.lastFailure ? `: ${waiting.lastFailure}` : ''})`);
    return parts.join('  ');
  }

  update(d: TransferDetails): void {
    const at = this.now();
    if (d.progress) {
      this.samples.push({ at, bytes: d.progress.bytes });
      while (this.samples.length > 2 && at - this.samples[0]!.at > 10_000) this.samples.shift();
    }
    const stateChanged = d.status.state !== this.lastState;
    const bytesChanged = d.progress?.bytes !== this.lastBytes;
    this.lastState = d.status.state;
    this.lastBytes = d.progress?.bytes;
    if (this.json) {
      if (stateChanged || bytesChanged) {
        const rate = this.rate();
        this.io.out(
          JSON.stringify({ at: new Date(at).toISOString(), state: d.status.state, bytes: d.progress?.bytes ?? null, totalBytes: d.progress?.totalBytes ?? null, bytesPerSec: rate ?? null, final: d.final }),
        );
      }
      return;
    }
    if (this.io.isTTY && this.io.write) {
      this.io.write(`\r\x1b[2K${this.line(d)}`);
      this.drawn = true;
      return;
    }
    if (stateChanged || (bytesChanged && at - this.lastLineAt >= 5000)) {
      this.io.out(`${new Date(at).toISOString()}  ${this.line(d)}`);
      this.lastLineAt = at;
    }
  }

  problem(message: string): void {
    if (this.json) this.io.out(JSON.stringify({ at: new Date(this.now()).toISOString(), problem: message }));
    else {
      this.endLine();
      this.io.err(message);
    }
  }

  done(d: TransferDetails | undefined): void {
    if (!d) return this.endLine();
    if (this.json) {
      this.io.out(JSON.stringify({ at: new Date(this.now()).toISOString(), state: d.status.state, final: d.final, reason: d.status.reason ?? null, bytes: d.progress?.bytes ?? null }));
      return;
    }
    if (this.io.isTTY && this.io.write) this.io.write(`\r\x1b[2K${this.line(d)}`);
    this.endLine();
    if (d.final) this.io.out(`transfer ${d.status.processId} ${d.status.state}${d.status.reason ? `: ${d.status.reason}` : ''}`);
  }

  private endLine(): void {
    if (this.drawn && this.io.write) this.io.write('\n');
    this.drawn = false;
  }
}

type Verb = 'suspend' | 'resume' | 'terminate' | 'complete' | 'approve';

function addVerb(parent: Command, ctx: Ctx, name: Verb): void {
  const withReason = name === 'suspend' || name === 'terminate';
  const call = (f: FerryClient, connectorId: string, processId: string, reason?: string): Promise<string> =>
    ({
      suspend: () => f.suspend(connectorId, processId, reason),
      terminate: () => f.terminate(connectorId, processId, reason),
      resume: () => f.resume(connectorId, processId),
      complete: () => f.complete(connectorId, processId),
      approve: () => f.start(connectorId, processId),
    })[name]();
  const summaries: Record<Verb, string> = {
    suspend: 'suspend a transfer',
    resume: 'resume a suspended transfer',
    terminate: 'terminate a transfer',
    complete: 'end a started transfer as done (a pull, when the consumer has its data)',
    approve: 'let a provider transfer held for approval (agreement start: manual) start',
  };
  const cmd = processArgs(parent.command(name))
    .summary(summaries[name])
    .description(`Asks the transfer to ${name === 'approve' ? 'start' : name}, then prints the state it is in. A command the transfer refuses in its current state prints why and exits 3.`)
    .option('--timeout <seconds>', 'how long to wait for the worker to accept or refuse', '30');
  if (withReason) cmd.option('--reason <text>', 'why (recorded in the history and sent to the counterparty)');
  cmd.action(async (connectorId: string, processId: string, o: { timeout?: string; reason?: string }) => {
    const timeout = seconds(o.timeout, 'timeout');
    await withSession(ctx.globals(), ctx.env, async (s) => {
      let state: string;
      try {
        state = await deadline(s, timeout, () => call(s.ferry, connectorId, processId, o.reason));
      } catch (e) {
        if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
        if (e instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isGrpcDeadlineError(e)) {
          throw new Failure(`no answer to ${name} within ${timeout}s: is the control-plane worker of connector ${connectorId} running?`);
        }
        throw e;
      }
      if (!ctx.globals().json) ctx.io.out(`transfer ${processId}: ${name} accepted (state ${state})`);
      await printStateAfter(ctx, s, connectorId, processId, { command: name, accepted: true, acceptedIn: state });
    });
  });
}

function addEdr(parent: Command, ctx: Ctx): void {
  processArgs(parent.command('edr'))
    .summary("print a pull's endpoint data reference (endpoint and token)")
    .description(
      'Prints the endpoint data reference (EDR) of a consumer\'s pull: the provider\'s endpoint and the bearer token to fetch the data with (curl -H "Authorization: <token>" <endpoint>). The token is encrypted in the workflow history like every payload; reading it needs the connector\'s codec keys. Exit 1 while there is none yet.',
    )
    .action(async (connectorId: string, processId: string) => {
      await withSession(ctx.globals(), ctx.env, async (s) => {
        const found = await deadline(s, 10, () => s.ferry.edr(connectorId, processId)).catch((e: unknown) => {
          if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
          throw e;
        });
        if (!found) throw new Failure(`transfer ${processId} has no EDR yet (not started, or not a pull)`);
        if (ctx.globals().json) ctx.io.out(JSON.stringify(found, null, 2));
        else {
          ctx.io.out(`endpoint  ${endpointUrl(found)}`);
          for (const p of found.endpointProperties) ctx.io.out(`${p.name.padEnd(9)} ${p.value}`);
        }
      });
    });
}

function addWait(parent: Command, ctx: Ctx): void {
  processArgs(parent.command('wait'))
    .summary('wait for a transfer to end and print its result')
    .description('Waits until the transfer ends and prints its final state and reason. Exit 0 when it COMPLETED, 1 otherwise (TERMINATED, failed, timed out).')
    .option('--timeout <seconds>', 'give up after this long (default: wait as long as it takes)')
    .action(async (connectorId: string, processId: string, o: { timeout?: string }) => {
      const timeout = seconds(o.timeout, 'timeout');
      await withSession(ctx.globals(), ctx.env, async (s) => {
        try {
          const result = await deadline(s, timeout, () => s.ferry.result(connectorId, processId));
          ctx.io.out(ctx.globals().json ? JSON.stringify({ connectorId, processId, ...result }, null, 2) : `transfer ${processId} ${result.state}: ${result.reason}`);
          ctx.code = result.state === 'COMPLETED' ? EXIT.OK : EXIT.FAILED;
        } catch (e) {
          if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
          if (e instanceof WorkflowFailedError) throw new Failure(`transfer ${processId} failed: ${rootMessage(e)}`);
          if (isGrpcDeadlineError(e)) throw new Failure(`transfer ${processId} did not end within ${timeout}s`);
          throw e;
        }
      });
    });
}

function addKeygen(program: Command, ctx: Ctx): void {
  program
    .command('keygen')
    .summary('print a new key entry (id:base64) for a key ring (FERRY_CODEC_KEYS, …)')
    .description(
      "Prints one new key entry, `id:base64` (32 random bytes), for any of ferry's key rings: FERRY_CODEC_KEYS (payload codec), FERRY_EDR_KEYS (a data plane's EDR tokens), FERRY_CALLBACK_KEYS (a data plane's provisioner callback URLs). To rotate, put the new entry first and keep the old ones after it (`new,old`), restart the processes that use the ring, and drop the old entry once nothing needs it. Needs no server.",
    )
    .option('--id <id>', 'the key id (default: k<date>-<random>)')
    .action((o: { id?: string }) => {
      let ring: Keyring;
      try {
        ring = Keyring.generate(o.id ?? newKeyId());
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      ctx.io.out(ring.serialize());
    });
}

function addNamespace(program: Command, ctx: Ctx): void {
  const ns = program.command('namespace').summary('set up namespaces for ferry (operators)');
  ns.command('setup')
    .summary("create the namespace if missing and register ferry's search attributes")
    .description(
      "Creates the namespace (--namespace, or the connection's) when it does not exist, waits until the server serves it, and registers every search attribute ferry's workflows set (through the operator service). Idempotent: run it at every deploy.",
    )
    .option('--retention <days>', 'workflow retention of a namespace it creates, in days', '7')
    .action(async (o: { retention?: string }) => {
      const days = Number(o.retention);
      if (!Number.isInteger(days) || days < 1) throw new UsageError(`--retention must be a whole number of days ≥ 1, got ${JSON.stringify(o.retention)}`);
      await withSession(ctx.globals(), ctx.env, async (s) => {
        const { setupNamespace } = await import('./namespaceSetup.js');
        const report = await setupNamespace(s.connection, s.namespace, { retentionDays: days, log: ctx.globals().json ? () => undefined : ctx.io.out });
        if (ctx.globals().json) ctx.io.out(JSON.stringify(report, null, 2));
        else ctx.io.out(`namespace ${s.namespace} ready: ${report.created ? 'created' : 'existed'}; search attributes ${report.searchAttributesAdded.length ? `added ${report.searchAttributesAdded.join(', ')}` : 'all present'}`);
      }, 'optional');
    });
}

/** The transfer commands, under `ferry transfer` and (the older spelling) at the top level. */
function addTransferCommands(parent: Command, ctx: Ctx, topLevel: boolean): void {
  addStart(parent, ctx);
  if (!topLevel) {
    addList(parent, ctx);
    addShow(parent, ctx, 'show', 'show a transfer: timeline, data flow, bytes moved, pending retries');
    addFollow(parent, ctx);
  } else {
    addShow(parent, ctx, 'status', 'show a transfer (the same as `ferry transfer show`)');
  }
  for (const verb of ['suspend', 'resume', 'terminate', 'complete', 'approve'] as const) addVerb(parent, ctx, verb);
  addEdr(parent, ctx);
  addWait(parent, ctx);
}

function buildProgram(ctx: Ctx): Command {
  const program = new Command('ferry');
  program
    .description('Start, list, inspect, follow and steer ferry transfers on Temporal.')
    .option('--address <host:port>', 'Temporal frontend (default: TEMPORAL_ADDRESS, the profile, localhost:7233)')
    .option('--namespace <name>', 'Temporal namespace (default: TEMPORAL_NAMESPACE, the profile, default)')
    .option('--profile <name>', 'temporal.toml profile (default: TEMPORAL_PROFILE, else "default")')
    .option('--env-file <file>', 'temporal.toml to read profiles from (default: TEMPORAL_CONFIG_FILE, ~/.config/temporalio/temporal.toml)')
    .option('--tls', 'TLS with the system roots (on by itself with an API key or certificates)')
    .option('--tls-cert <file>', 'client certificate (PEM) for mTLS')
    .option('--tls-key <file>', 'client key (PEM) for mTLS')
    .option('--tls-ca <file>', 'CA certificate (PEM) that signed the server certificate')
    .option('--tls-server-name <name>', 'server name to verify the certificate against')
    .option('--ui <url>', 'Web UI base for printed links (default: $FERRY_UI_URL, else address port + 1000)')
    .option('--codec-keys-file <file>', "the connector's payload codec keys (default: FERRY_CODEC_KEYS, FERRY_CODEC_KEYS_FILE, else the dev keys in .data/keys/codec.keys)")
    .option('--codec-endpoint <url>', 'instead of keys: a codec server (default: $FERRY_CODEC_ENDPOINT)')
    .option('--codec-auth <value>', 'its Authorization header, e.g. "Bearer <token>" (default: $FERRY_CODEC_AUTH)')
    .option('--json', 'print results as JSON (follow: one object per line)')
    .addHelpText('after', `\n${CONNECTION_HELP}\n\n${EXIT_CODES_HELP}`)
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.io.out(s.replace(/\n$/, '')), writeErr: (s) => ctx.io.err(s.replace(/\n$/, '')) });

  const transfer = program.command('transfer').summary('list, show, follow, start and steer transfers');
  addTransferCommands(transfer, ctx, false);
  addTransferCommands(program, ctx, true);
  addNamespace(program, ctx);
  addKeygen(program, ctx);
  // every command reports errors through exitOverride and prints help on `--help`
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const c of all(program)) {
    c.exitOverride();
    c.configureHelp({ showGlobalOptions: true });
    c.configureOutput({ writeOut: (s) => ctx.io.out(s.replace(/\n$/, '')), writeErr: (s) => ctx.io.err(s.replace(/\n$/, '')) });
    if (c !== program) c.addHelpText('after', `\n${EXIT_CODES_HELP}`);
  }
  return program;
}

const defaultIo = (): Io => ({
  out: (l) => console.log(l),
  err: (l) => console.error(l),
  isTTY: !!process.stdout.isTTY,
  write: (t) => process.stdout.write(t),
});

/** Runs the CLI; returns the exit code. Never throws. */
export async function run(argv: string[], io: Io = defaultIo(), env = process.env): Promise<number> {
  const ctx: Ctx = { io, env, globals: () => program.opts<GlobalOptions>(), code: EXIT.OK };
  const program = buildProgram(ctx);
  if (argv.length === 0) {
    io.err(program.helpInformation().replace(/\n$/, ''));
    return EXIT.USAGE;
  }
  // the command's name for messages: `transfer show`, `namespace setup`, `status`
  const words = argv.filter((a) => !a.startsWith('-'));
  const name = (['transfer', 'namespace'].includes(words[0] ?? '') ? words.slice(0, 2) : words.slice(0, 1)).join(' ') || 'ferry';
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.code;
  } catch (e) {
    const json = argv.includes('--json');
    const fail = (code: number, message: string) => {
      io.err(message);
      if (json) io.out(JSON.stringify({ ok: false, exitCode: code, error: message }));
      return code;
    };
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') return EXIT.OK;
      // commander printed the message already
      return EXIT.USAGE;
    }
    if (e instanceof UsageError) return fail(EXIT.USAGE, `ferry ${name}: ${e.message}\nRun \`ferry ${name} --help\` for usage.`);
    if (e instanceof InvalidRequestError) return fail(EXIT.USAGE, e.message);
    if (e instanceof CommandRefusedError) return fail(EXIT.REFUSED, `ferry ${name}: refused: ${e.message}`);
    if (e instanceof Failure) return fail(EXIT.FAILED, `ferry ${name}: ${e.message}`);
    // Unexpected: still one line by default; FERRY_DEBUG=1 shows the whole error.
    const code = fail(EXIT.FAILED, `ferry ${name}: ${rootMessage(e)}`);
    if (env.FERRY_DEBUG) io.err(e instanceof Error ? (e.stack ?? String(e)) : String(e));
    return code;
  }
}

const isMain = (() => {
  if (!process.argv[1]) return false;
  try {
    // installed, the bin is a symlink (node_modules/.bin/ferry)
    return realpathSync(path.resolve(process.argv[1])) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();
if (isMain) {
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(EXIT.FAILED);
    },
  );
}
