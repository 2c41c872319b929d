import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  Client,
  Connection,
  isGrpcDeadlineError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import { z } from 'zod';
import { CommandRefusedError, FerryClient, InvalidRequestError, TransferRequestSchema, type TransferRequest } from '../src/client.js';
import { endpointUrl, type DataAddress } from '../src/DataAddress.js';
import { ferryDataConverter } from '../src/codec.js';
import { ConfigError } from '../src/config.js';
import { Keyring, KEY_VARIABLES, keyringFromEnv, newKeyId } from '../src/keys.js';
import type { TransferProcessStatus } from '../src/TransferProcess.js';
import { RemoteCodec } from './codecServer.js';
import { REPO_ROOT } from './temporalCli.js';

/**
 * `npm run ferry -- <command>`: start, inspect and steer transfers from a shell.
 *
 * Exit codes: 0 ok, 1 failure (transfer not COMPLETED, not found, server unreachable),
 * 2 usage or invalid input (nothing was started), 3 a command the transfer refused.
 */

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, REFUSED: 3 } as const;

/** A mistake of the user's: its message is printed (with a hint), never a stack trace. */
class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
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

type Options = NonNullable<ParseArgsConfig['options']>;

const GLOBAL_OPTIONS = {
  address: { type: 'string' },
  namespace: { type: 'string' },
  'codec-keys-file': { type: 'string' },
  'codec-endpoint': { type: 'string' },
  'codec-auth': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies Options;

const GLOBAL_HELP = `Global options:
  --address HOST:PORT      Temporal frontend (default $TEMPORAL_ADDRESS or localhost:7233)
  --namespace NAME         Temporal namespace (default $TEMPORAL_NAMESPACE or default)
  --codec-keys-file FILE   the connector's payload codec keys (default $FERRY_CODEC_KEYS, $FERRY_CODEC_KEYS_FILE,
                           else the dev keys in .data/keys/codec.keys); every payload is encrypted with them
  --codec-endpoint URL     instead of keys: a codec server (default $FERRY_CODEC_ENDPOINT)
  --codec-auth VALUE       its Authorization header, e.g. "Bearer <token>" (default $FERRY_CODEC_AUTH)
  -h, --help               this help`;

const USAGE = `Usage: ferry <command> [options]

Commands:
  start      start a consumer transfer
  status     show a transfer's state, destination and history
  suspend    suspend a transfer
  resume     resume a suspended transfer
  terminate  terminate a transfer
  complete   end a started transfer as done (a pull's consumer, when it has its data)
  approve    let a provider transfer held for approval (agreement start: manual) start
  edr        print a pull's endpoint data reference (endpoint and token) to fetch with
  wait       wait for a transfer to end and print its result
  keygen     print a new key entry (id:base64) for a key ring (FERRY_CODEC_KEYS, …)

Run \`ferry <command> --help\` for a command's options.

${GLOBAL_HELP}

Exit codes: 0 ok, 1 failed (or transfer not COMPLETED), 2 usage/invalid input, 3 command refused.`;

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

interface Context {
  io: Io;
  env: NodeJS.ProcessEnv;
}

interface Command {
  summary: string;
  usage: string;
  options: Options;
  positionals: string[];
  run(ctx: Context, values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Connection

interface Session {
  ferry: FerryClient;
  connection: Connection;
  namespace: string;
  close(): Promise<void>;
}

function temporalTarget(values: Record<string, unknown>, env: NodeJS.ProcessEnv): { address: string; namespace: string } {
  const address = (values.address as string | undefined) ?? env.TEMPORAL_ADDRESS ?? 'localhost:7233';
  const namespace = (values.namespace as string | undefined) ?? env.TEMPORAL_NAMESPACE ?? 'default';
  if (!address) throw new UsageError('--address must not be empty');
  if (!namespace) throw new UsageError('--namespace must not be empty');
  return { address, namespace };
}

async function openSession(values: Record<string, unknown>, env: NodeJS.ProcessEnv): Promise<Session> {
  const { address, namespace } = temporalTarget(values, env);
  const codec = codecOf(values, env, namespace);
  let connection: Connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: '5s' });
  } catch (e) {
    throw new Failure(`cannot reach Temporal at ${address}: ${rootMessage(e)}`);
  }
  const client = new Client({ connection, namespace, dataConverter: ferryDataConverter(codec) });
  return { ferry: new FerryClient(client), connection, namespace, close: () => connection.close() };
}

async function withSession<T>(values: Record<string, unknown>, env: NodeJS.ProcessEnv, fn: (s: Session) => Promise<T>): Promise<T> {
  const session = await openSession(values, env);
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

/** The innermost message of an error chain (gRPC errors wrap the useful part). */
function rootMessage(e: unknown): string {
  let current: unknown = e;
  let message = e instanceof Error ? e.message : String(e);
  for (let depth = 0; current instanceof Error && depth < 5; depth++) {
    if (current.message) message = current.message;
    current = current.cause;
  }
  return message;
}

// ---------------------------------------------------------------------------------------------
// Keys

/** Where `npm run dev` keeps its generated keys. */
export function devKeysDir(env: NodeJS.ProcessEnv): string {
  return path.join(path.resolve(env.FERRY_DATA_DIR ?? path.join(REPO_ROOT, '.data')), 'keys');
}

/** The codec: a codec server (`--codec-endpoint`, $FERRY_CODEC_ENDPOINT), or keys (`codecKeys`). */
function codecOf(values: Record<string, unknown>, env: NodeJS.ProcessEnv, namespace: string): Keyring | RemoteCodec {
  const endpoint = (values['codec-endpoint'] as string | undefined) ?? env.FERRY_CODEC_ENDPOINT;
  const keysFile = values['codec-keys-file'] as string | undefined;
  if (!endpoint) return codecKeys(keysFile, env);
  if (keysFile) throw new UsageError('give either --codec-keys-file or --codec-endpoint, not both');
  if (!URL.canParse(endpoint) || !/^https?:$/.test(new URL(endpoint).protocol)) throw new UsageError(`--codec-endpoint must be an http(s) URL`);
  const authorization = (values['codec-auth'] as string | undefined) ?? env.FERRY_CODEC_AUTH;
  return new RemoteCodec(endpoint, { namespace, ...(authorization ? { authorization } : {}) });
}

/** The payload codec keys: `--codec-keys-file`, else FERRY_CODEC_KEYS(_FILE), else the dev keys when they exist. */
function codecKeys(explicit: string | undefined, env: NodeJS.ProcessEnv): Keyring {
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
  throw new UsageError(
    `no payload codec keys: every payload is encrypted, so ferry needs the connector's keys. Pass --codec-keys-file FILE or set ${KEY_VARIABLES.codec} or ${KEY_VARIABLES.codec}_FILE (or use a codec server: --codec-endpoint URL --codec-auth "Bearer <token>")`,
  );
}

// ---------------------------------------------------------------------------------------------
// Commands

const PROCESS_POSITIONALS = ['CONNECTOR', 'PROCESS_ID'];

function twoPositionals(positionals: string[], command: string): [string, string] {
  const [connectorId, processId, ...extra] = positionals;
  if (!connectorId || !processId) throw new UsageError(`${command} needs CONNECTOR and PROCESS_ID`, command);
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`, command);
  return [connectorId, processId];
}

function parseJsonOption(value: string, name: string): unknown {
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new UsageError(`--${name} is not valid JSON: ${(e as Error).message}`, 'start');
  }
}

const start: Command = {
  summary: 'start a consumer transfer',
  usage: `Usage: ferry start --connector ID --counterparty ADDR --agreement ID --asset ID [--type TYPE] (--dest PATH | --dest-json JSON) [options]

Starts a consumer TransferProcess. The request is checked in full first: an invalid one starts nothing (exit 2).

Options:
  --connector ID          this (consumer) connector
  --counterparty ADDR     the provider's connector, e.g. temporal://provider
  --agreement ID          contract agreement id
  --asset ID              asset id
  --type TYPE             File-PUSH (default), HttpData-PUSH or HttpData-PULL (a pull takes no destination:
                          fetch with the EDR the provider sends, see \`ferry edr\`)
  --dest PATH             File destination: a relative path inside the data plane's file root
  --dest-json JSON        any destination as a DataAddress: {"endpointType":…,"endpoint":…,"endpointProperties":[…]}
  --process-id ID         process id (default: random); the same id twice reaches the same transfer
  --data-plane ID         pin the transfer to one data-plane instance
  --settings-json JSON    per-transfer setting overrides, e.g. {"requestedTimeout":"1m"}
  --ui URL                Temporal Web UI base for the printed link (default http://localhost:8233)
  --json                  print the result as JSON

${GLOBAL_HELP}`,
  options: {
    connector: { type: 'string' },
    counterparty: { type: 'string' },
    agreement: { type: 'string' },
    asset: { type: 'string' },
    type: { type: 'string', default: 'File-PUSH' },
    dest: { type: 'string' },
    'dest-json': { type: 'string' },
    'process-id': { type: 'string' },
    'data-plane': { type: 'string' },
    'settings-json': { type: 'string' },
    ui: { type: 'string', default: 'http://localhost:8233' },
    json: { type: 'boolean', default: false },
  },
  positionals: [],
  async run({ io, env }, v, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`, 'start');
    const str = (name: string) => v[name] as string | undefined;
    const missing = ['connector', 'counterparty', 'agreement', 'asset'].filter((n) => str(n) === undefined);
    const pull = (str('type') ?? '').endsWith('-PULL');
    if (!pull && str('dest') === undefined && str('dest-json') === undefined) missing.push('dest');
    if (missing.length > 0) throw new UsageError(`missing ${missing.map((n) => `--${n}`).join(', ')}`, 'start');
    if (str('dest') !== undefined && str('dest-json') !== undefined) throw new UsageError('give either --dest or --dest-json, not both', 'start');

    const dataDestination = (
      str('dest-json') !== undefined ? parseJsonOption(str('dest-json')!, 'dest-json') : str('dest') !== undefined ? { endpointType: 'File', endpoint: str('dest') } : undefined
    ) as DataAddress | undefined;
    // Unchecked here: TransferRequestSchema reports every problem at once below.
    const request = {
      connectorId: str('connector'),
      counterpartyAddress: str('counterparty'),
      agreementId: str('agreement'),
      assetId: str('asset'),
      transferType: str('type'),
      ...(dataDestination !== undefined ? { dataDestination } : {}),
      ...(str('process-id') !== undefined ? { processId: str('process-id') } : {}),
      ...(str('data-plane') !== undefined ? { dataPlaneId: str('data-plane') } : {}),
      ...(str('settings-json') !== undefined ? { settings: parseJsonOption(str('settings-json')!, 'settings-json') } : {}),
    } as TransferRequest;

    // Checked before connecting, so a bad request fails the same way whether or not the server is up.
    const parsed = TransferRequestSchema.safeParse(request);
    if (!parsed.success) throw new InvalidRequestError(`invalid transfer request:\n${z.prettifyError(parsed.error)}`);

    const ui = (str('ui') ?? '').replace(/\/+$/, '');
    return withSession(v, env, async (s) => {
      const started = await s.ferry.startTransfer(request);
      const link = `${ui}/namespaces/${encodeURIComponent(s.namespace)}/workflows/${encodeURIComponent(started.workflowId)}`;
      if (v.json) {
        io.out(JSON.stringify({ ...started, namespace: s.namespace, url: link }, null, 2));
      } else {
        io.out(`transfer ${started.processId} started`);
        io.out(`  process id   ${started.processId}`);
        io.out(`  workflow id  ${started.workflowId}`);
        io.out(`  web ui       ${link}`);
        io.out(`follow it with: ferry status ${started.connectorId} ${started.processId}`);
      }
      return EXIT.OK;
    });
  },
};

const status: Command = {
  summary: "show a transfer's state",
  usage: `Usage: ferry status CONNECTOR PROCESS_ID [--json] [--timeout SECONDS]

Shows state, role, counterparty, data plane, destination (credentials masked), reason/error and the
state history. Needs the connector's control-plane worker to answer the query.

Options:
  --json               print the status as JSON
  --timeout SECONDS    how long to wait for the worker's answer (default 10)

${GLOBAL_HELP}`,
  options: { json: { type: 'boolean', default: false }, timeout: { type: 'string', default: '10' } },
  positionals: PROCESS_POSITIONALS,
  async run({ io, env }, v, positionals) {
    const [connectorId, processId] = twoPositionals(positionals, 'status');
    const timeout = seconds(v.timeout, 'timeout');
    return withSession(v, env, async (s) => {
      let st: TransferProcessStatus;
      try {
        st = await deadline(s, timeout, () => s.ferry.status(connectorId, processId));
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
      if (v.json) io.out(JSON.stringify(st, null, 2));
      else io.out(formatStatus(st));
      return EXIT.OK;
    });
  },
};

function formatAddress(a: DataAddress | undefined): string {
  if (!a) return '-';
  const props = a.endpointProperties.map((p) => `${p.name}=${p.value}`);
  return `${a.endpointType} ${a.endpoint}${props.length > 0 ? `  (${props.join(', ')})` : ''}`;
}

export function formatStatus(st: TransferProcessStatus): string {
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
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, val]) => `${k.padEnd(width)}  ${val}`);
  lines.push('', 'history:', ...table(['AT', 'STATE', 'NOTE'], st.history.map((h) => [h.at, h.state, h.note ?? ''])).map((l) => `  ${l}`));
  return lines.join('\n');
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

type Verb = 'suspend' | 'resume' | 'terminate' | 'complete' | 'approve';

function commandOf(name: Verb): Command {
  const withReason = name === 'suspend' || name === 'terminate';
  const call = (f: FerryClient, connectorId: string, processId: string, reason?: string): Promise<string> =>
    ({
      suspend: () => f.suspend(connectorId, processId, reason),
      terminate: () => f.terminate(connectorId, processId, reason),
      resume: () => f.resume(connectorId, processId),
      complete: () => f.complete(connectorId, processId),
      approve: () => f.start(connectorId, processId),
    })[name]();
  return {
    summary: `${name} a transfer`,
    usage: `Usage: ferry ${name} CONNECTOR PROCESS_ID${withReason ? ' [--reason TEXT]' : ''} [--timeout SECONDS]

Asks the transfer to ${name} and prints the state it reports. A command the transfer refuses in its
current state prints why and exits 3.

Options:
${withReason ? '  --reason TEXT        why (recorded in the history and sent to the counterparty)\n' : ''}  --timeout SECONDS    how long to wait for the worker to accept or refuse (default 30)

${GLOBAL_HELP}`,
    options: { ...(withReason ? { reason: { type: 'string' } } : {}), timeout: { type: 'string', default: '30' } },
    positionals: PROCESS_POSITIONALS,
    async run({ io, env }, v, positionals) {
      const [connectorId, processId] = twoPositionals(positionals, name);
      const timeout = seconds(v.timeout, 'timeout');
      const reason = v.reason as string | undefined;
      return withSession(v, env, async (s) => {
        try {
          const state = await deadline(s, timeout, () => call(s.ferry, connectorId, processId, reason));
          io.out(`transfer ${processId}: ${name} accepted (state ${state})`);
          return EXIT.OK;
        } catch (e) {
          if (e instanceof CommandRefusedError) {
            io.err(`${name} refused: ${e.message}`);
            return EXIT.REFUSED;
          }
          if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
          if (e instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isGrpcDeadlineError(e)) {
            throw new Failure(`no answer to ${name} within ${timeout}s: is the control-plane worker of connector ${connectorId} running?`);
          }
          throw e;
        }
      });
    },
  };
}

const edr: Command = {
  summary: "print a pull's endpoint data reference",
  usage: `Usage: ferry edr CONNECTOR PROCESS_ID [--json]

Prints the endpoint data reference (EDR) of a consumer's pull: the provider's endpoint and the bearer
token to fetch the data with (\`curl -H "Authorization: <token>" <endpoint>\`). The token is encrypted
in the workflow history like every payload; reading it needs the connector's codec keys. Exit 1 while
there is none yet.

Options:
  --json                   print the EDR as a DSP DataAddress

${GLOBAL_HELP}`,
  options: { json: { type: 'boolean', default: false } },
  positionals: PROCESS_POSITIONALS,
  async run({ io, env }, v, positionals) {
    const [connectorId, processId] = twoPositionals(positionals, 'edr');
    return withSession(v, env, async (s) => {
      const found = await deadline(s, 10, () => s.ferry.edr(connectorId, processId)).catch((e: unknown) => {
        if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
        throw e;
      });
      if (!found) throw new Failure(`transfer ${processId} has no EDR yet (not started, or not a pull)`);
      if (v.json) io.out(JSON.stringify(found, null, 2));
      else {
        io.out(`endpoint  ${endpointUrl(found)}`);
        for (const p of found.endpointProperties) io.out(`${p.name.padEnd(9)} ${p.value}`);
      }
      return EXIT.OK;
    });
  },
};

const wait: Command = {
  summary: 'wait for a transfer to end',
  usage: `Usage: ferry wait CONNECTOR PROCESS_ID [--json] [--timeout SECONDS]

Waits until the transfer ends and prints its final state and reason.
Exit code 0 when it COMPLETED, 1 otherwise (TERMINATED, failed, timed out).

Options:
  --json               print the result as JSON
  --timeout SECONDS    give up after this long (default: wait as long as it takes)

${GLOBAL_HELP}`,
  options: { json: { type: 'boolean', default: false }, timeout: { type: 'string' } },
  positionals: PROCESS_POSITIONALS,
  async run({ io, env }, v, positionals) {
    const [connectorId, processId] = twoPositionals(positionals, 'wait');
    const timeout = seconds(v.timeout, 'timeout');
    return withSession(v, env, async (s) => {
      try {
        const result = await deadline(s, timeout, () => s.ferry.result(connectorId, processId));
        io.out(v.json ? JSON.stringify(result, null, 2) : `transfer ${processId} ${result.state}: ${result.reason}`);
        return result.state === 'COMPLETED' ? EXIT.OK : EXIT.FAILED;
      } catch (e) {
        if (e instanceof WorkflowNotFoundError) throw notFound(connectorId, processId, s.namespace);
        if (e instanceof WorkflowFailedError) throw new Failure(`transfer ${processId} failed: ${rootMessage(e)}`);
        if (isGrpcDeadlineError(e)) throw new Failure(`transfer ${processId} did not end within ${timeout}s`);
        throw e;
      }
    });
  },
};

const keygen: Command = {
  summary: 'print a new key entry for a key ring',
  usage: `Usage: ferry keygen [--id ID]

Prints one new key entry, \`id:base64\` (32 random bytes), for any of ferry's key rings:
FERRY_CODEC_KEYS (payload codec), FERRY_EDR_KEYS (a data plane's EDR tokens), FERRY_CALLBACK_KEYS
(a data plane's provisioner callback URLs). To rotate, put the new entry first and keep the old ones
after it (\`new,old\`), restart the processes that use the ring, and drop the old entry once nothing
needs it. Needs no server.

Options:
  --id ID   the key id (default: k<date>-<random>)`,
  options: { id: { type: 'string' } },
  positionals: [],
  async run({ io }, v, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`, 'keygen');
    let ring: Keyring;
    try {
      ring = Keyring.generate((v.id as string | undefined) ?? newKeyId());
    } catch (e) {
      throw new UsageError((e as Error).message, 'keygen');
    }
    io.out(ring.serialize());
    return EXIT.OK;
  },
};

export const COMMANDS: Record<string, Command> = {
  start,
  status,
  suspend: commandOf('suspend'),
  resume: commandOf('resume'),
  terminate: commandOf('terminate'),
  complete: commandOf('complete'),
  approve: commandOf('approve'),
  edr,
  wait,
  keygen,
};

// ---------------------------------------------------------------------------------------------
// Dispatch

/** Global options may come before the command: `ferry --address x:7233 status …`. */
function splitCommand(argv: string[]): { command?: string; rest: string[] } {
  const before: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return { rest: [...before, ...argv.slice(i)] };
    if (!arg.startsWith('-')) return { command: arg, rest: [...before, ...argv.slice(i + 1)] };
    before.push(arg);
    const name = arg.replace(/^--?/, '').split('=')[0];
    const takesValue = (GLOBAL_OPTIONS as Options)[name ?? '']?.type === 'string';
    if (!arg.includes('=') && takesValue && i + 1 < argv.length) before.push(argv[++i]!);
  }
  return { rest: before };
}

/** Runs the CLI; returns the exit code. Never throws. */
export async function run(argv: string[], io: Io = { out: (l) => console.log(l), err: (l) => console.error(l) }, env = process.env): Promise<number> {
  const { command: name, rest } = splitCommand(argv);
  const wantsHelp = rest.some((a) => a === '--help' || a === '-h');
  if (name === undefined || name === 'help') {
    const topic = name === 'help' ? rest.find((a) => !a.startsWith('-')) : undefined;
    if (topic && COMMANDS[topic]) {
      io.out(COMMANDS[topic].usage);
      return EXIT.OK;
    }
    if (wantsHelp || name === 'help') {
      io.out(USAGE);
      return EXIT.OK;
    }
    io.err(USAGE);
    return EXIT.USAGE;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`ferry: unknown command ${JSON.stringify(name)}\n`);
    io.err(USAGE);
    return EXIT.USAGE;
  }
  if (wantsHelp) {
    io.out(command.usage);
    return EXIT.OK;
  }
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...GLOBAL_OPTIONS, ...command.options }, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError((e as Error).message, name);
    }
    return await command.run({ io, env }, parsed.values as Record<string, string | boolean | undefined>, parsed.positionals);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`ferry ${name}: ${e.message}`);
      io.err(`Run \`ferry ${e.command ?? name} --help\` for usage.`);
      return EXIT.USAGE;
    }
    if (e instanceof InvalidRequestError) {
      io.err(e.message);
      return EXIT.USAGE;
    }
    if (e instanceof CommandRefusedError) {
      io.err(`ferry ${name}: refused: ${e.message}`);
      return EXIT.REFUSED;
    }
    if (e instanceof Failure) {
      io.err(`ferry ${name}: ${e.message}`);
      return EXIT.FAILED;
    }
    // Unexpected: still one line by default; FERRY_DEBUG=1 shows the whole error.
    io.err(`ferry ${name}: ${rootMessage(e)}`);
    if (env.FERRY_DEBUG) io.err(e instanceof Error ? (e.stack ?? String(e)) : String(e));
    return EXIT.FAILED;
  }
}

const isMain = !!process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(EXIT.FAILED);
    },
  );
}
