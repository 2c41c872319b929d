import { z } from 'zod';
import { DataAddressSchema } from './DataAddress.js';
import { IdSchema } from './ids.js';
import { DataFlowSettingsSchema, DurationSchema, TransferSettingsSchema } from './settings.js';
import { TransferTypeSchema } from './TransferProcess.js';
import { JwksSchema } from './dps.js';

/** Worker configuration. Validated at start-up; a bad value stops the worker before it polls. */

export const TemporalConnectionSchema = z.object({
  address: z.string().min(1).default('localhost:7233'),
  namespace: z.string().min(1).default('default'),
});

/** Keys live in the environment or in key files, never in a config file: a leftover key is refused, naming where it goes. */
const keyNotHere = (variable: string) =>
  z.undefined({ error: `keys are not read from config files: remove it and set ${variable} or ${variable}_FILE (see the README, "Keys")` }).optional();

export const ProvisionerConfigSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('file-destination') }),
  z.object({
    kind: z.literal('http'),
    name: IdSchema,
    url: z.url(),
    side: z.enum(['source', 'destination']),
    endpointTypes: z.array(z.string().min(1)).min(1),
    /** Only addresses whose endpoint starts with this prefix (a rule for some datasets). */
    endpointPrefix: z.string().min(1).optional(),
    timeoutMs: z.number().int().positive().max(300_000).optional(),
  }),
]);
export type ProvisionerConfig = z.infer<typeof ProvisionerConfigSchema>;

export const DataPlaneConfigSchema = z.object({
  instanceId: IdSchema,
  temporal: TemporalConnectionSchema.default({ address: 'localhost:7233', namespace: 'default' }),
  /** Every File address this data plane touches must lie under this directory. */
  fileRoot: z.string().min(1),
  /** The HTTP endpoint external provisioning services call back on. */
  callback: z
    .object({
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
    .object({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(0),
      /** The URL consumers reach it at (behind a proxy, say); the bound address otherwise. */
      publicUrl: z.url().optional(),
      /** How long an issued access token is valid. A resumed pull gets a new one. */
      tokenTtl: DurationSchema.default('10m'),
      /** How long a refresh token is valid; each refresh hands out a new pair, so a live pull never runs dry. */
      refreshTtl: DurationSchema.default('1d'),
      tokenKey: keyNotHere('FERRY_EDR_KEYS'),
    })
    .optional(),
  /**
   * Where an HttpData push may send (a consumer names the destination): URL prefixes, matched on
   * whole path segments. Absent: anywhere. Set it on data planes that can reach internal services.
   */
  allowedHttpDestinations: z.array(z.url()).min(1).optional(),
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
export const DpsPeerAuthSchema = z.object({
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
export const DpsDatasetSchema = z.object({ source: DataAddressSchema.optional(), destination: DataAddressSchema.optional() });

export const DpsDataPlaneConfigSchema = z.object({
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

export const DataPlaneInstanceSchema = z.object({
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
export const CounterpartySchema = z.object({
  id: IdSchema,
  /** Its DSP base URL (`https://…`); messages to it go there, and its callback addresses must start with it. */
  address: z.url(),
  /** The token it presents to us (`Authorization: Bearer …`). */
  inboundToken: z.string().min(16, 'tokens must have at least 16 characters'),
  /** The token we present to it. */
  outboundToken: z.string().min(16, 'tokens must have at least 16 characters'),
});
export type Counterparty = z.infer<typeof CounterpartySchema>;

/** Provider side: the agreements a consumer may transfer under (contract negotiation is out of scope). */
export const AgreementSchema = z.object({
  assetId: z.string().min(1),
  /** The counterparty id the agreement was made with. */
  counterparty: IdSchema,
  /** `manual`: a transfer under it waits in REQUESTED for an operator's start command (`ferry start`). */
  start: z.enum(['automatic', 'manual']).optional(),
});

export const DspConfigSchema = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(0),
  /** Our DSP base URL as counterparties reach it (also our consumer callbackAddress). */
  publicUrl: z.url().optional(),
  counterparties: z.array(CounterpartySchema).default([]),
  agreements: z.record(z.string().min(1), AgreementSchema).default({}),
  requestTimeoutMs: z.number().int().positive().max(120_000).default(10_000),
});
export type DspConfig = z.infer<typeof DspConfigSchema>;

export const ControlPlaneConfigSchema = z.object({
  connectorId: IdSchema,
  temporal: TemporalConnectionSchema.default({ address: 'localhost:7233', namespace: 'default' }),
  /** The data-plane instances this control plane may use. */
  dataPlanes: z.array(DataPlaneInstanceSchema).min(1),
  /** Provider side: where each offered asset's bytes are. */
  assets: z.record(z.string().min(1), DataAddressSchema).default({}),
  transfer: TransferSettingsSchema.partial().default({}),
  secretKey: keyNotHere('FERRY_CODEC_KEYS'),
  /** The Dataspace Protocol over HTTP(S): off unless configured. */
  dsp: DspConfigSchema.optional(),
  /** Data Plane Signaling over HTTP: needed when a data plane is a DPS endpoint (`dataPlanes[].dps`) or registers itself. */
  dpsSignaling: DpsSignalingConfigSchema.optional(),
}).refine((c) => c.dpsSignaling || !c.dataPlanes.some((d) => d.dps), {
  message: 'a DPS data plane (dataPlanes[].dps) calls back on the control plane: configure dpsSignaling',
  path: ['dpsSignaling'],
});
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
