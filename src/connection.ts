import { readFileSync } from 'node:fs';
import { loadClientConfigProfile, type ClientConfigProfile, type ConfigDataSource } from '@temporalio/envconfig';
import type { TLSConfig } from '@temporalio/client';
import { z } from 'zod';

/**
 * Where and how to reach Temporal, in Temporal's own conventions: `TEMPORAL_ADDRESS`,
 * `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, profiles in `temporal.toml`
 * (`TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`), read with `@temporalio/envconfig`. Workers, the CLI
 * and `FerryClient.connect` resolve a connection the same way.
 */

export const DEFAULT_ADDRESS = 'localhost:7233';
export const DEFAULT_NAMESPACE = 'default';

export const TlsSettingsSchema = z
  .object({
    /** Server name the certificate must carry (SNI), when not the address's host. */
    serverName: z.string().min(1).optional(),
    /** CA that signed the server certificate (PEM file); the system roots when absent. */
    serverCaCertPath: z.string().min(1).optional(),
    serverCaCertData: z.string().min(1).optional(),
    /** Client certificate and key (PEM files) for mTLS. */
    clientCertPath: z.string().min(1).optional(),
    clientCertData: z.string().min(1).optional(),
    clientKeyPath: z.string().min(1).optional(),
    clientKeyData: z.string().min(1).optional(),
  })
  .strict()
  .refine((t) => !!(t.clientCertPath || t.clientCertData) === !!(t.clientKeyPath || t.clientKeyData), {
    message: 'mTLS needs both a client certificate and its key',
  });
export type TlsSettings = z.infer<typeof TlsSettingsSchema>;

export const TemporalConnectionSchema = z
  .object({
    address: z.string().min(1).default(DEFAULT_ADDRESS),
    namespace: z.string().min(1).default(DEFAULT_NAMESPACE),
    /** API key (Temporal Cloud, or a server with an authorizer); turns TLS on unless `tls: false`. */
    apiKey: z.string().min(1).optional(),
    /** `true`: TLS with the system roots; an object: TLS/mTLS with these certificates; `false`/absent: plain. */
    tls: z.union([z.boolean(), TlsSettingsSchema]).optional(),
    /** Extra gRPC headers on every call. */
    grpcMeta: z.record(z.string(), z.string()).optional(),
  })
  .strict();
export type TemporalConnection = z.infer<typeof TemporalConnectionSchema>;
export type TemporalConnectionInput = z.input<typeof TemporalConnectionSchema>;

export class ConnectionSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionSettingsError';
  }
}

const source = (s: ConfigDataSource | undefined, kind: 'Path' | 'Data'): string | undefined => {
  if (!s) return undefined;
  if (kind === 'Path') return 'path' in s ? s.path : undefined;
  return 'data' in s ? (typeof s.data === 'string' ? s.data : Buffer.from(s.data).toString('utf8')) : undefined;
};

/** A temporal.toml profile (after env overrides) in ferry's shape; absent fields stay absent. */
function fromProfile(p: ClientConfigProfile): Partial<TemporalConnectionInput> {
  const out: Partial<TemporalConnectionInput> = {};
  if (p.address) out.address = p.address;
  if (p.namespace) out.namespace = p.namespace;
  if (p.apiKey) out.apiKey = p.apiKey;
  if (p.grpcMeta && Object.keys(p.grpcMeta).length > 0) out.grpcMeta = p.grpcMeta;
  if (p.tls) {
    if (p.tls.disabled) out.tls = false;
    else {
      const tls = Object.fromEntries(
        Object.entries({
          serverName: p.tls.serverName,
          serverCaCertPath: source(p.tls.serverCACert, 'Path'),
          serverCaCertData: source(p.tls.serverCACert, 'Data'),
          clientCertPath: source(p.tls.clientCert, 'Path'),
          clientCertData: source(p.tls.clientCert, 'Data'),
          clientKeyPath: source(p.tls.clientKey, 'Path'),
          clientKeyData: source(p.tls.clientKey, 'Data'),
        }).filter(([, v]) => v !== undefined),
      );
      out.tls = Object.keys(tls).length > 0 ? tls : true;
    }
  }
  return out;
}

export interface ResolveOptions {
  /** Explicit settings (a config file's `temporal` block, CLI flags): they win over env and profile. */
  explicit?: Partial<TemporalConnectionInput>;
  /** The temporal.toml profile (default `$TEMPORAL_PROFILE`, else `default`). */
  profile?: string;
  /** temporal.toml path (default `$TEMPORAL_CONFIG_FILE`, else ~/.config/temporalio/temporal.toml if present). */
  configFile?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * The connection settings in force: explicit settings, then `TEMPORAL_*` variables, then the
 * temporal.toml profile, then localhost:7233 / default. A bad profile or file is a
 * ConnectionSettingsError naming it.
 */
export function resolveTemporalConnection(opts: ResolveOptions = {}): TemporalConnection {
  const env = opts.env ?? process.env;
  let fromEnv: Partial<TemporalConnectionInput>;
  try {
    fromEnv = fromProfile(
      loadClientConfigProfile({
        ...(opts.profile ? { profile: opts.profile } : {}),
        ...(opts.configFile ? { configSource: { path: opts.configFile } } : {}),
        overrideEnvVars: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string')),
      }),
    );
  } catch (e) {
    const file = opts.configFile ?? env.TEMPORAL_CONFIG_FILE;
    const profile = opts.profile ?? env.TEMPORAL_PROFILE;
    throw new ConnectionSettingsError(
      `cannot load Temporal connection settings${file ? ` from ${file}` : ''}${profile ? ` (profile ${profile})` : ''}: ${(e as Error).message}`,
    );
  }
  const explicit = Object.fromEntries(Object.entries(opts.explicit ?? {}).filter(([, v]) => v !== undefined));
  const merged = { ...fromEnv, ...explicit };
  // certificate flags on top of a profile's TLS settings add to them
  if (typeof fromEnv.tls === 'object' && typeof explicit.tls === 'object' && explicit.tls) merged.tls = { ...fromEnv.tls, ...explicit.tls };
  const parsed = TemporalConnectionSchema.safeParse(merged);
  if (!parsed.success) throw new ConnectionSettingsError(`invalid Temporal connection settings:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

function readPem(path: string | undefined, data: string | undefined, what: string): Buffer | undefined {
  if (data) return Buffer.from(data);
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConnectionSettingsError(`cannot read the ${what} ${path}: ${(e as Error).message}`);
  }
}

/** TLS as the SDK's connections take it (`Connection.connect` and `NativeConnection.connect`). */
export function tlsConfig(t: TemporalConnection): TLSConfig | boolean | undefined {
  if (t.tls === false) return false;
  if (t.tls === undefined || t.tls === true) return t.tls ?? (t.apiKey ? true : undefined);
  const ca = readPem(t.tls.serverCaCertPath, t.tls.serverCaCertData, 'server CA certificate');
  const crt = readPem(t.tls.clientCertPath, t.tls.clientCertData, 'client certificate');
  const key = readPem(t.tls.clientKeyPath, t.tls.clientKeyData, 'client key');
  return {
    ...(t.tls.serverName ? { serverNameOverride: t.tls.serverName } : {}),
    ...(ca ? { serverRootCACertificate: ca } : {}),
    ...(crt && key ? { clientCertPair: { crt, key } } : {}),
  };
}

/** Options for `Connection.connect` / `NativeConnection.connect`. */
export function connectionOptions(t: TemporalConnection): { address: string; tls?: TLSConfig | boolean; apiKey?: string; metadata?: Record<string, string> } {
  const tls = tlsConfig(t);
  return {
    address: t.address,
    ...(tls !== undefined ? { tls } : {}),
    ...(t.apiKey ? { apiKey: t.apiKey } : {}),
    ...(t.grpcMeta ? { metadata: t.grpcMeta } : {}),
  };
}

/** A one-line description for logs: address, namespace, and how it is secured (never the secrets). */
export function describeConnection(t: TemporalConnection): string {
  const tls = t.tls === undefined || t.tls === false ? (t.apiKey ? 'TLS' : 'plaintext') : t.tls === true ? 'TLS' : t.tls.clientCertPath || t.tls.clientCertData ? 'mTLS' : 'TLS';
  return `${t.address} namespace ${t.namespace} (${tls}${t.apiKey ? ', API key' : ''})`;
}

/**
 * The Web UI for a connection: `$FERRY_UI_URL` when set, Temporal Cloud's UI for a Cloud address,
 * else the dev server's convention (same host, frontend port + 1000: 7233 → 8233).
 */
export function webUiBase(t: Pick<TemporalConnection, 'address'>, env: NodeJS.ProcessEnv = process.env): string {
  if (env.FERRY_UI_URL) return env.FERRY_UI_URL.replace(/\/+$/, '');
  const m = /^(?:[a-z]+:\/\/)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?/i.exec(t.address);
  const host = m?.[1] ?? 'localhost';
  if (host.endsWith('.tmprl.cloud')) return 'https://cloud.temporal.io';
  const port = Number(m?.[2] ?? 7233);
  return `http://${host}:${port + 1000}`;
}

export const workflowUrl = (ui: string, namespace: string, workflowId: string): string =>
  `${ui.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;

/** The innermost message of an error chain (gRPC errors wrap the useful part). */
export function rootMessage(e: unknown): string {
  let current: unknown = e;
  let message = e instanceof Error ? e.message : String(e);
  for (let depth = 0; current instanceof Error && depth < 5; depth++) {
    if (current.message) message = current.message;
    current = current.cause;
  }
  return message;
}
