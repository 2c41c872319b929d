import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import { freePort } from '../../test/support/cluster.js';

export { freePort };

/**
 * A real multi-service Temporal server for tests and trials, without Docker: PostgreSQL 15 (a
 * private cluster made with initdb/pg_ctl in a temp dir), the Temporal server v1.30.4 built from
 * its Go module (`go install`, cached outside the repository), its SQL schema set up with the
 * server's own schema tool, and the four services (frontend, history, matching, worker) as four
 * processes, with mTLS between the services and for every client (certificates made with openssl).
 */

const run = promisify(execFile);

export const TEMPORAL_SERVER_VERSION = 'v1.30.4';
const POSTGRES_BIN = process.env.FERRY_POSTGRES_BIN ?? '/usr/lib/postgresql/15/bin';
const SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;

export interface TlsFiles {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** The name the server certificate is issued to. */
  serverName: string;
}

export interface TemporalCluster {
  /** The frontend, e.g. 127.0.0.1:40123 (mTLS only). */
  address: string;
  tls: TlsFiles;
  /** TEMPORAL_* variables that reach this cluster with a client certificate (Temporal's conventions). */
  clientEnv: Record<string, string>;
  dir: string;
  /** Where each service and PostgreSQL write their logs. */
  logs: Record<string, string>;
  stop(): Promise<void>;
}

/** Where the server binaries are built: outside the repository, kept between runs. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.FERRY_CACHE_DIR ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'ferry');
  return path.join(base, `temporal-server-${TEMPORAL_SERVER_VERSION}`);
}

export interface Prerequisites {
  ok: boolean;
  missing: string[];
}

/** What this machine lacks to run the cluster (Go, PostgreSQL 15, openssl). */
export async function prerequisites(): Promise<Prerequisites> {
  const missing: string[] = [];
  await run('go', ['version']).catch(() => missing.push('go (the Go toolchain)'));
  if (!existsSync(path.join(POSTGRES_BIN, 'initdb'))) missing.push(`PostgreSQL 15 server binaries in ${POSTGRES_BIN} (Debian: apt-get install postgresql-15)`);
  await run('openssl', ['version']).catch(() => missing.push('openssl'));
  return { ok: missing.length === 0, missing };
}

/** Builds (once) the server and its SQL tool into the cache dir; returns their paths and the schema dir. */
export async function serverBinaries(log: (line: string) => void = () => undefined): Promise<{ server: string; sql: string; schema: string }> {
  const bin = path.join(cacheDir(), 'bin');
  const server = path.join(bin, 'server');
  const sql = path.join(bin, 'sql');
  if (!existsSync(server) || !existsSync(sql)) {
    log(`building the Temporal server ${TEMPORAL_SERVER_VERSION} and its SQL tool into ${bin} (go install; minutes, once)`);
    mkdirSync(bin, { recursive: true });
    await run('go', ['install', `go.temporal.io/server/cmd/server@${TEMPORAL_SERVER_VERSION}`, `go.temporal.io/server/cmd/tools/sql@${TEMPORAL_SERVER_VERSION}`], {
      env: { ...process.env, GOBIN: bin, GOFLAGS: '-mod=mod' },
      maxBuffer: 64 * 1024 * 1024,
    });
  }
  const { stdout } = await run('go', ['env', 'GOMODCACHE']);
  let schema = path.join(stdout.trim(), `go.temporal.io/server@${TEMPORAL_SERVER_VERSION}`, 'schema', 'postgresql', 'v12');
  if (!existsSync(schema)) {
    // the module cache was cleaned after the build: fetch the module source for its schema files
    await run('go', ['mod', 'download', `go.temporal.io/server@${TEMPORAL_SERVER_VERSION}`], { env: { ...process.env, GOFLAGS: '-mod=mod' } });
    schema = path.join(stdout.trim(), `go.temporal.io/server@${TEMPORAL_SERVER_VERSION}`, 'schema', 'postgresql', 'v12');
  }
  return { server, sql, schema };
}

/** A free port below 32768: Temporal keeps membership ports in a smallint column. */
export async function freeLowPort(): Promise<number> {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 22_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer()
        .once('error', () => resolve(false))
        .listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** A CA, a server certificate (also the services' client certificate among themselves) and a client certificate, all with openssl. */
export async function makeCertificates(dir: string): Promise<TlsFiles> {
  mkdirSync(dir, { recursive: true });
  const f = (name: string) => path.join(dir, name);
  const ssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  await ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=ferry test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const leaf = async (name: string, cn: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext);
    await ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    await ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-out', f(`${name}.pem`), '-extfile', f(`${name}.ext`));
  };
  await leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n');
  await leaf('client', 'ferry-worker', 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n');
  return { ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key'), serverName: 'localhost' };
}

/** initdb refuses root: as root, PostgreSQL runs as the `postgres` user (made by the Debian package). */
function asPostgresUser(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

async function startPostgres(dir: string, port: number, log: string): Promise<{ stop(): Promise<void> }> {
  mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']).catch(() => {
      throw new Error('running as root, PostgreSQL needs the `postgres` user (apt-get install postgresql-15 makes it)');
    });
    const uid = Number(stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(dir, uid, gid);
    chownSync(path.dirname(log), uid, gid);
  }
  const pwfile = path.join(dir, '..', 'pgpass');
  writeFileSync(pwfile, 'temporal\n', { mode: 0o644 });
  const data = path.join(dir, 'data');
  await run(...asPostgresUser(path.join(POSTGRES_BIN, 'initdb'), ['-D', data, '-U', 'temporal', '--pwfile', pwfile, '-A', 'scram-sha-256', '-E', 'UTF8', '--locale', 'C']));
  await run(
    ...asPostgresUser(path.join(POSTGRES_BIN, 'pg_ctl'), ['-D', data, '-l', log, '-w', '-t', '120', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off`, 'start']),
  );
  return {
    async stop() {
      await run(...asPostgresUser(path.join(POSTGRES_BIN, 'pg_ctl'), ['-D', data, '-w', '-t', '60', '-m', 'fast', 'stop'])).catch(() => undefined);
    },
  };
}

function serverConfig(o: { pgPort: number; ports: Record<(typeof SERVICES)[number], { grpc: number; membership: number }>; httpPort: number; tls: TlsFiles; dynamicConfig: string }): string {
  const services = SERVICES.map(
    (s) => `  ${s}:
    rpc:
      grpcPort: ${o.ports[s].grpc}
      membershipPort: ${o.ports[s].membership}
      bindOnIP: 127.0.0.1${s === 'frontend' ? `\n      httpPort: ${o.httpPort}` : ''}`,
  );
  const store = (db: string, conns: number) => `      sql:
        pluginName: postgres12
        databaseName: ${db}
        connectAddr: "127.0.0.1:${o.pgPort}"
        connectProtocol: tcp
        user: temporal
        password: temporal
        maxConns: ${conns}
        maxIdleConns: ${conns}
        maxConnLifetime: 1h`;
  const serverTls = `        certFile: ${o.tls.serverCert}
        keyFile: ${o.tls.serverKey}
        requireClientAuth: true
        clientCaFiles: [${o.tls.ca}]`;
  const clientTls = `        serverName: ${o.tls.serverName}
        rootCaFiles: [${o.tls.ca}]`;
  return `log:
  stdout: true
  level: warn
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: 4
  datastores:
    postgres-default:
${store('temporal', 20)}
    postgres-visibility:
${store('temporal_visibility', 10)}
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  tls:
    internode:
      server:
${serverTls}
      client:
${clientTls}
    frontend:
      server:
${serverTls}
      client:
${clientTls}
    systemWorker:
      certFile: ${o.tls.serverCert}
      keyFile: ${o.tls.serverKey}
      client:
${clientTls}
services:
${services.join('\n')}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:${o.ports.frontend.grpc}"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: ${o.dynamicConfig}
  pollInterval: 10s
`;
}

/**
 * The frontend answers over mTLS; with `all`, history and matching too (a call routed to each:
 * an unknown workflow is NOT_FOUND from history, a task queue description comes from matching).
 */
async function waitForServer(address: string, tls: TlsFiles, until: number, exited: () => string | undefined, all: boolean): Promise<void> {
  let last = '';
  while (Date.now() < until) {
    const dead = exited();
    if (dead) throw new Error(dead);
    try {
      const connection = await Connection.connect({
        address,
        connectTimeout: '2s',
        tls: { serverNameOverride: tls.serverName, serverRootCACertificate: readFileSync(tls.ca), clientCertPair: { crt: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey) } },
      });
      try {
        await connection.withDeadline(Date.now() + 5000, async () => {
          const namespace = 'temporal-system';
          await connection.workflowService.describeNamespace({ namespace });
          if (!all) return;
          await connection.workflowService.describeWorkflowExecution({ namespace, execution: { workflowId: 'ferry-cluster-probe' } }).catch((e: { code?: number }) => {
            if (e.code !== 5) throw e; // NOT_FOUND: history answered
          });
          await connection.workflowService.describeTaskQueue({ namespace, taskQueue: { name: 'ferry-cluster-probe' }, taskQueueType: 1 });
        });
        return;
      } finally {
        await connection.close();
      }
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`the Temporal server at ${address} did not answer${all ? ' with history and matching' : ''}: ${last}`);
}

/** Starts the whole thing; `stop()` ends every process it started and removes the temp dir. */
export async function startTemporalCluster(opts: { log?: (line: string) => void; keepDir?: boolean } = {}): Promise<TemporalCluster> {
  const log = opts.log ?? (() => undefined);
  const pre = await prerequisites();
  if (!pre.ok) throw new Error(`cannot run a Temporal cluster here: missing ${pre.missing.join('; ')}`);
  const bins = await serverBinaries(log);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-cluster-'));
  // PostgreSQL may run as another user (see asPostgresUser): it must reach its own folder
  chmodSync(dir, 0o755);
  const logsDir = path.join(dir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const logs: Record<string, string> = { postgres: path.join(logsDir, 'postgres.log') };
  const processes: ChildProcess[] = [];
  let pg: { stop(): Promise<void> } | undefined;
  const stop = async () => {
    for (const p of processes.reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      await gone;
      clearTimeout(timer);
    }
    await pg?.stop();
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    log('certificates (openssl)');
    const tls = await makeCertificates(path.join(dir, 'tls'));
    const pgPort = await freePort();
    log(`PostgreSQL 15 on 127.0.0.1:${pgPort}`);
    pg = await startPostgres(path.join(dir, 'pg'), pgPort, logs.postgres!);

    log('schema (temporal-sql-tool)');
    const sql = (db: string, ...args: string[]) => run(bins.sql, ['--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(pgPort), '-u', 'temporal', '--pw', 'temporal', '--db', db, ...args]);
    for (const [db, schema] of [
      ['temporal', 'temporal'],
      ['temporal_visibility', 'visibility'],
    ] as const) {
      await sql(db, 'create-database');
      await sql(db, 'setup-schema', '-v', '0.0');
      await sql(db, 'update-schema', '-d', path.join(bins.schema, schema, 'versioned'));
    }

    const ports = Object.fromEntries(await Promise.all(SERVICES.map(async (s) => [s, { grpc: await freePort(), membership: await freeLowPort() }] as const))) as Record<
      (typeof SERVICES)[number],
      { grpc: number; membership: number }
    >;
    const dynamicConfig = path.join(dir, 'dynamicconfig.yaml');
    writeFileSync(
      dynamicConfig,
      // tests register search attributes and use them at once
      'system.forceSearchAttributesCacheRefreshOnRead:\n  - value: true\n',
    );
    const configFile = path.join(dir, 'temporal.yaml');
    writeFileSync(configFile, serverConfig({ pgPort, ports, httpPort: await freePort(), tls, dynamicConfig }));

    const address = `127.0.0.1:${ports.frontend.grpc}`;
    let exitedEarly: string | undefined;
    const startService = (service: (typeof SERVICES)[number]) => {
      logs[service] = path.join(logsDir, `${service}.log`);
      const out = openSync(logs[service]!, 'a');
      const child = spawn(bins.server, ['--config-file', configFile, '--allow-no-auth', 'start', '--service', service], { cwd: dir, stdio: ['ignore', out, out] });
      child.once('exit', (code, signal) => {
        exitedEarly ??= `Temporal ${service} exited (${code ?? signal}); its log: ${logs[service]}\n${readFileSync(logs[service]!, 'utf8').split('\n').slice(-5).join('\n')}`;
      });
      processes.push(child);
      log(`Temporal ${service} (pid ${child.pid}) on 127.0.0.1:${ports[service].grpc}`);
    };
    // The frontend first: the first service to start writes the cluster metadata, and two at once race for it.
    startService('frontend');
    await waitForServer(address, tls, Date.now() + 180_000, () => exitedEarly, false);
    for (const service of SERVICES.slice(1)) startService(service);
    await waitForServer(address, tls, Date.now() + 180_000, () => exitedEarly, true);
    log(`frontend answers on ${address} (mTLS), history and matching in its ring`);
    const clientEnv = {
      TEMPORAL_ADDRESS: address,
      TEMPORAL_TLS_CLIENT_CERT_PATH: tls.clientCert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: tls.clientKey,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: tls.ca,
      TEMPORAL_TLS_SERVER_NAME: tls.serverName,
    };
    return { address, tls, clientEnv, dir, logs, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
