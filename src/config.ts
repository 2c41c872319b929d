import { z } from 'zod';
import { TemporalConnectionSchema } from './connection.js';
import { DataAddressSchema } from './schemas/DataAddress.js';
import { IdSchema } from './schemas/ids.js';
import { LIMITS } from './limits.js';
import { AgreementIdSchema, AssetIdSchema } from './schemas/limits.js';
import { DataFlowSettingsSchema, duration, TransferSettingsSchema } from './schemas/settings.js';
import { TransferTypeSchema } from './schemas/TransferProcess.js';
import { isValidCidr, parseHttpUrl } from './urlPolicy.js';
import { JwksSchema } from './dps.js';

/**
 * Worker configuration. Validated at start-up; a bad value stops the worker before it polls. Every
 * object is strict: an unknown key (a typo) is an error, never silently a default.
 */

/** An http(s) URL without credentials, as the URL policy parses it. */
const HttpUrlSchema = z.url().refine((u) => {
  try {
    parseHttpUrl(u);
    return true;
  } catch {
    return false;
  }
}, 'must be an http(s) URL without user:password@ and without encoded separators in its path');

/** A data address in a config file: no keys but its own (DSP addresses on the wire may carry `@type`s, a config may not carry typos). */
const ConfiguredAddressSchema = z
  .strictObject({ endpointType: z.unknown(), endpoint: z.unknown(), endpointProperties: z.unknown().optional() })
  .pipe(DataAddressSchema);

export { TemporalConnectionSchema };
const TEMPORAL_DEFAULTS = { address: 'localhost:7233', namespace: 'default' };

/**
 * How a worker process runs (not what it does): shutdown drain, health endpoint, logs, Worker
 * Versioning. The SDK's Prometheus endpoint is process-wide, so it is read where the process starts.
 */
export const WorkerRunSchema = z
  .strictObject({
    /** After SIGTERM the worker stops polling and lets running activities go on this long; then they are cancelled (a transfer heartbeats its offset and resumes on the next worker). */
    shutdownGraceTime: duration('0s', '1h').default('30s'),
    /** `/healthz` (alive) and `/readyz` (connected and polling). Port 0: a free port, logged at start. */
    health: z
      .strictObject({ host: z.string().min(1).default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(0) })
      .default({ host: '127.0.0.1', port: 0 }),
    /** Prometheus endpoint of the SDK runtime, which also carries ferry's own metrics, e.g. "0.0.0.0:9464". Off when absent. */
    metricsBindAddress: z.string().regex(/^[^\s:]+:\d+$/, 'metricsBindAddress must be HOST:PORT').optional(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
    /** Worker Versioning: this worker's deployment version. */
    deployment: z
      .strictObject({
        name: z.string().min(1),
        buildId: z.string().min(1),
        /** Opt in to versioned task routing (then the deployment's current version must be set: `temporal worker deployment set-current-version`). */
        useVersioning: z.boolean().default(false),
        defaultVersioningBehavior: z.enum(['AUTO_UPGRADE', 'PINNED']).default('AUTO_UPGRADE'),
      })
      .optional(),
  })
  .default({ shutdownGraceTime: '30s', health: { host: '127.0.0.1', port: 0 }, logLevel: 'info' });
export type WorkerRun = z.infer<typeof WorkerRunSchema>;

/** Keys live in the environment or in key files, never in a config file: a leftover key is refused, naming where it goes. */
const keyNotHere = (variable: string) =>
  z.undefined({ error: `keys are not read from config files: remove it and set ${variable} or ${variable}_FILE (see the README, "Keys")` }).optional();

export const ProvisionerConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('file-destination') }),
  z.strictObject({
    kind: z.literal('http'),
    name: IdSchema,
    url: HttpUrlSchema,
    side: z.enum(['source', 'destination']),
    endpointTypes: z.array(z.string().min(1)).min(1),
    /** Only addresses whose endpoint starts with this prefix (a rule for some datasets). */
    endpointPrefix: z.string().min(1).optional(),
    timeoutMs: z.number().int().positive().max(300_000).optional(),
    /** Request headers for the service (its credentials); used by activities only, never logged nor put in a workflow. */
    headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'an HTTP header name'), z.string().regex(/^[^\r\n]*$/, 'no line breaks')).optional(),
  }),
]);
export type ProvisionerConfig = z.infer<typeof ProvisionerConfigSchema>;

export const DataPlaneConfigSchema = z.strictObject({
  instanceId: IdSchema,
  temporal: TemporalConnectionSchema.default(TEMPORAL_DEFAULTS),
  worker: WorkerRunSchema,
  /** Every File address this data plane touches must lie under this directory. */
  fileRoot: z.string().min(1),
  /** The HTTP endpoint external provisioning services call back on. */
  callback: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(0),
      /** The URL services use to reach it, when not the bound address (behind a proxy, say). */
      publicUrl: z.url().optional(),
    })
    .default({ host: '127.0.0.1', port: 0 }),
  callbackKey: keyNotHere('FERRY_CALLBACK_KEYS'),
  secretKey: keyNotHere('FERRY_CODEC_KEYS'),
  provisioners: z.array(ProvisionerConfigSchema).default([{ kind: 'file-destination' }]),
  /**
   * The public HTTP endpoint consumers pull from with an EDR (HttpData-PULL). When configured, this
   * data plane issues EDRs for the pulls it provides.
   */
  publicApi: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(0),
      /** The URL consumers reach it at (behind a proxy, say); the bound address otherwise. */
      publicUrl: z.url().optional(),
      /** How long an issued access token is valid. A resumed pull gets a new one. */
      tokenTtl: duration('1s', '1d').default('10m'),
      /** How long a refresh token is valid; each refresh hands out a new pair, so a live pull never runs dry. */
      refreshTtl: duration('1s', '30d').default('1d'),
      tokenKey: keyNotHere('FERRY_EDR_KEYS'),
    })
    .optional(),
  /**
   * Where an HttpData push may send (a consumer names the destination): URL prefixes, matched on
   * parsed URLs (scheme, host, port, whole path segments). When set, it alone decides (its hosts
   * may be internal). Absent: any host whose addresses the network policy below allows.
   */
  allowedHttpDestinations: z.array(HttpUrlSchema).min(1).optional(),
  /**
   * Network policy of HTTP requests (HttpData sources, and destinations when no allowlist is set):
   * by default only public addresses, checked on the resolved addresses at connect time. Allow
   * every private range, or just some CIDRs (the dev setup allows loopback).
   */
  allowPrivateNetworks: z.boolean().default(false),
  allowedNetworks: z.array(z.string().refine(isValidCidr, 'must be a CIDR such as 10.0.0.0/8 or ::1/128')).optional(),
  /** Cap bandwidth (bytes/s): of each push, and of each response the public endpoint serves to a pull. */
  rateLimitBytesPerSec: z.number().int().positive().optional(),
  dataFlow: DataFlowSettingsSchema.partial().default({}),
  /** Data Plane Signaling over HTTP: any DPS control plane may drive this data plane. Off unless configured. */
  dps: z.lazy(() => DpsDataPlaneConfigSchema).optional(),
});
export type DataPlaneConfig = z.infer<typeof DataPlaneConfigSchema>;

const TokenSchema = z.string().min(16, 'tokens must have at least 16 characters');

/**
 * How one DPS party authenticates another: a static bearer token, and/or self-signed JWTs
 * (`oauth2_client_credentials`) verified with its keys (`jwks` inline or `jwksUri`).
 */
export const DpsPeerAuthSchema = z.strictObject({
  /** The bearer token it presents to us. */
  inboundToken: TokenSchema.optional(),
  /** Keys that verify its self-signed JWTs (sub = its id, aud = our id). */
  jwks: JwksSchema.optional(),
  jwksUri: z.url().optional(),
  /** The bearer token we present to it; without one we present a self-signed JWT when we have a signing key (`FERRY_DPS_SIGNING_KEY`). */
  outboundToken: TokenSchema.optional(),
});

/** A control plane that may drive this data plane over DPS (configured; others register with `PUT /controlplanes`). */
export const DpsControlPlaneSchema = DpsPeerAuthSchema.extend({
  id: IdSchema,
  /** Its DPS signaling base URL: callbacks go to `{endpoint}/transfers/{processId}/dataflow/…`. */
  endpoint: z.url(),
});
export type DpsControlPlane = z.infer<typeof DpsControlPlaneSchema>;

/** Where a dataset's bytes are (provider) or go (consumer), for control planes that do not say (DPS names only the dataset). */
export const DpsDatasetSchema = z.strictObject({ source: DataAddressSchema.optional(), destination: DataAddressSchema.optional() });

export const DpsDataPlaneConfigSchema = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(0),
  /** Our DPS base URL as control planes reach it. */
  publicUrl: z.url().optional(),
  /** Our id as a DPS data plane (the `aud` of the tokens control planes present); the instance id by default. */
  dataplaneId: IdSchema.optional(),
  controlPlanes: z.array(DpsControlPlaneSchema).default([]),
  /** Guards `PUT /controlplanes` and `DELETE /controlplanes/{id}`; without it, registration over HTTP is off. */
  adminToken: TokenSchema.optional(),
  signingKey: keyNotHere('FERRY_DPS_SIGNING_KEY'),
  datasets: z.record(z.string().min(1), DpsDatasetSchema).default({}),
  /** How long a prepare/start waits for provisioning that needs no external party before it answers 202 instead of 200. */
  syncWaitMs: z.number().int().min(0).max(60_000).default(5000),
  /** Token renewal: resolve `did:web` documents over plain HTTP (loopback tests only; DIDs use HTTPS). */
  didWebHttp: z.boolean().default(false),
  /** Callback attempts before a callback is given up (exponential backoff from 1 s). */
  callbackMaxAttempts: z.number().int().min(1).max(50).default(8),
  /** Where registrations and pending-callback marks are kept across restarts; `<fileRoot>/.ferry-dps` by default. */
  stateDir: z.string().min(1).optional(),
});
export type DpsDataPlaneConfig = z.infer<typeof DpsDataPlaneConfigSchema>;

/** A data plane this control plane drives over DPS HTTP instead of Temporal. */
export const DpsDataPlaneRefSchema = DpsPeerAuthSchema.extend({
  /** Its DPS base URL (`…/dataflows/prepare` lies under it). */
  url: z.url(),
  /** The DPS profile each transfer type goes out as, when not the standard one (`https://w3id.org/dspace-sig/profile/http-pull`, …). */
  profiles: z.array(z.string().min(1)).optional(),
  /** Accept its callbacks without credentials: only where the network authenticates it (some peers, like the DPS TCK, send none). */
  acceptUnauthenticated: z.boolean().default(false),
});

export const DataPlaneInstanceSchema = z.strictObject({
  id: IdSchema,
  transferTypes: z.array(TransferTypeSchema).min(1).default(['File-PUSH']),
  /** Present: a DPS data plane reached over HTTP. Absent: a ferry data-plane worker on Temporal. */
  dps: DpsDataPlaneRefSchema.optional(),
});
export type DataPlaneInstance = z.infer<typeof DataPlaneInstanceSchema>;

/** The control plane's DPS signaling endpoint: data planes call back and register here. */
export const DpsSignalingConfigSchema = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(0),
  publicUrl: z.url().optional(),
  /** Our id as a DPS control plane; the connector id by default. */
  controlplaneId: IdSchema.optional(),
  /** Guards `PUT /dataplanes` and `DELETE /dataplanes/{id}`; without it, registration over HTTP is off. */
  adminToken: TokenSchema.optional(),
  signingKey: keyNotHere('FERRY_DPS_SIGNING_KEY'),
  /** `dataspaceContext` of the messages we send. */
  dataspaceContext: z.string().min(1).default('default'),
  requestTimeoutMs: z.number().int().positive().max(120_000).default(10_000),
  stateDir: z.string().min(1).optional(),
});
export type DpsSignalingConfig = z.infer<typeof DpsSignalingConfigSchema>;

/** A connector this one talks DSP with, and the bearer tokens each side presents. */
export const CounterpartySchema = z.strictObject({
  id: IdSchema,
  /** Its DSP base URL (`https://…`); messages to it go there, and its callback addresses must lie under it. */
  address: HttpUrlSchema.refine((u) => u.length <= LIMITS.addressBytes, `at most ${LIMITS.addressBytes} characters`),
  /** The token it presents to us (`Authorization: Bearer …`). */
  inboundToken: z.string().min(16, 'tokens must have at least 16 characters'),
  /** The token we present to it. */
  outboundToken: z.string().min(16, 'tokens must have at least 16 characters'),
});
export type Counterparty = z.infer<typeof CounterpartySchema>;

/** Provider side: the agreements a consumer may transfer under (contract negotiation is out of scope). */
export const AgreementSchema = z.strictObject({
  assetId: AssetIdSchema,
  /** The counterparty id the agreement was made with. */
  counterparty: IdSchema,
  /** `manual`: a transfer under it waits in REQUESTED for an operator's start command (`ferry start`). */
  start: z.enum(['automatic', 'manual']).optional(),
});

export type Agreement = z.infer<typeof AgreementSchema>;
export const AgreementsSchema = z.record(AgreementIdSchema, AgreementSchema);

/** Limits of the DSP endpoint, per authenticated counterparty (unauthenticated callers: per IP). */
export const DspLimitsSchema = z.strictObject({
  /**
   * Requests per `window` before 429 (with Retry-After). A counterparty with many transfers sends
   * their messages and its watchdog's state checks: 600 a minute throttled a 200-transfer drill
   * past its retry budget, so the default leaves room (`concurrency` bounds the load).
   */
  maxRequests: z.number().int().min(1).max(1_000_000).default(6000),
  window: duration('1s', '1h').default('1m'),
  /** Requests in progress at once before 429. */
  concurrency: z.number().int().min(1).max(10_000).default(64),
  /** Largest request body; larger ones get 413 before they are parsed. */
  bodyBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(64 * 1024),
  /** How long a request may take (its Temporal calls included) before 503. */
  requestTimeout: duration('100ms', '5m').default('10s'),
});
export type DspLimits = z.infer<typeof DspLimitsSchema>;

export const DspConfigSchema = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(0),
  /** Our DSP base URL as counterparties reach it (also our consumer callbackAddress). */
  publicUrl: HttpUrlSchema.optional(),
  counterparties: z
    .array(CounterpartySchema)
    .default([])
    .superRefine((list, ctx) => {
      const ids = list.map((c) => c.id);
      const dup = ids.find((id, i) => ids.indexOf(id) !== i);
      if (dup) ctx.addIssue({ code: 'custom', message: `counterparty id ${dup} is configured twice` });
      const tokens = list.map((c) => c.inboundToken);
      if (new Set(tokens).size !== tokens.length) ctx.addIssue({ code: 'custom', message: 'two counterparties share an inboundToken: a token must name one counterparty' });
    }),
  /** Deprecated place of the control plane's `agreements` (still read, merged with them). */
  agreements: AgreementsSchema.default({}),
  requestTimeoutMs: z.number().int().positive().max(120_000).default(10_000),
  limits: DspLimitsSchema.default(DspLimitsSchema.parse({})),
});
export type DspConfig = z.infer<typeof DspConfigSchema>;

const ControlPlaneObjectSchema = z.strictObject({
  connectorId: IdSchema,
  temporal: TemporalConnectionSchema.default(TEMPORAL_DEFAULTS),
  worker: WorkerRunSchema,
  /** The data-plane instances this control plane may use. */
  dataPlanes: z.array(DataPlaneInstanceSchema).min(1),
  /** Provider side: where each offered asset's bytes are. */
  assets: z.record(AssetIdSchema, ConfiguredAddressSchema).default({}),
  /**
   * Provider side: the agreements a consumer may transfer under, by agreement id (contract
   * negotiation is out of scope). Both transports admit requests against them.
   */
  agreements: AgreementsSchema.default({}),
  transfer: TransferSettingsSchema.partial().default({}),
  /**
   * The connector watchdog (one workflow per connector): every `interval` it checks each STARTED
   * transfer's data flow and counterparty; a data plane or counterparty silent for `lostAfter`
   * ends the transfer.
   */
  watchdog: z
    .object({
      interval: duration('1s', '1d').default('5m'),
      lostAfter: duration('1s', '30d').default('15m'),
      /** How many transfers one sweep checks at a time. */
      parallelism: z.number().int().min(1).max(256).default(16),
    })
    .strict()
    .default({ interval: '5m', lostAfter: '15m', parallelism: 16 }),
  secretKey: keyNotHere('FERRY_CODEC_KEYS'),
  /** The Dataspace Protocol over HTTP(S): off unless configured. */
  dsp: DspConfigSchema.optional(),
  /** Data Plane Signaling over HTTP: needed when a data plane is a DPS endpoint (`dataPlanes[].dps`) or registers itself. */
  dpsSignaling: DpsSignalingConfigSchema.optional(),
}).refine((c) => c.dpsSignaling || !c.dataPlanes.some((d) => d.dps), {
  message: 'a DPS data plane (dataPlanes[].dps) calls back on the control plane: configure dpsSignaling',
  path: ['dpsSignaling'],
});

/** `dsp.agreements` (the old place) merged into `agreements`; one id in both must say the same. */
export const ControlPlaneConfigSchema = ControlPlaneObjectSchema.superRefine((config, ctx) => {
  for (const [id, old] of Object.entries(config.dsp?.agreements ?? {})) {
    const now = config.agreements[id];
    if (now && JSON.stringify(now) !== JSON.stringify(old)) {
      ctx.addIssue({ code: 'custom', path: ['dsp', 'agreements', id], message: `agreement ${id} differs from agreements.${id}` });
    }
  }
  for (const [id, agreement] of Object.entries({ ...config.dsp?.agreements, ...config.agreements })) {
    if (!config.assets[agreement.assetId]) ctx.addIssue({ code: 'custom', path: ['agreements', id, 'assetId'], message: `agreement ${id} names asset ${agreement.assetId}, which is not in assets` });
  }
}).transform((config) => ({ ...config, agreements: { ...config.dsp?.agreements, ...config.agreements } }));
export type ControlPlaneConfig = z.infer<typeof ControlPlaneConfigSchema>;

/** Parses config with one readable message listing every problem. */
export function parseConfig<T extends z.ZodType>(schema: T, raw: unknown, what: string): z.infer<T> {
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(`invalid ${what}:\n${z.prettifyError(result.error)}`);
  return result.data;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
