import { z } from 'zod';
import { TemporalConnectionSchema } from './connection.js';
import { DataAddressSchema } from './DataAddress.js';
import { IdSchema } from './ids.js';
import { DataFlowSettingsSchema, DurationSchema, TransferSettingsSchema } from './settings.js';
import { TransferTypeSchema } from './TransferProcess.js';

/** Worker configuration. Validated at start-up; a bad value stops the worker before it polls. */

export { TemporalConnectionSchema };
const TEMPORAL_DEFAULTS = { address: 'localhost:7233', namespace: 'default' };

/**
 * How a worker process runs (not what it does): shutdown drain, health endpoint, logs, Worker
 * Versioning. The SDK's Prometheus endpoint is process-wide, so it is read where the process starts.
 */
export const WorkerRunSchema = z
  .object({
    /** After SIGTERM the worker stops polling and lets running activities go on this long; then they are cancelled (a transfer heartbeats its offset and resumes on the next worker). */
    shutdownGraceTime: DurationSchema.default('30s'),
    /** `/healthz` (alive) and `/readyz` (connected and polling). Port 0: a free port, logged at start. */
    health: z
      .object({ host: z.string().min(1).default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(0) })
      .default({ host: '127.0.0.1', port: 0 }),
    /** Prometheus endpoint of the SDK runtime, which also carries ferry's own metrics, e.g. "0.0.0.0:9464". Off when absent. */
    metricsBindAddress: z.string().regex(/^[^\s:]+:\d+$/, 'metricsBindAddress must be HOST:PORT').optional(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
    /** Worker Versioning: this worker's deployment version. */
    deployment: z
      .object({
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
  z.object({ kind: z.literal('file-destination') }),
  z.object({
    kind: z.literal('http'),
    name: IdSchema,
    url: z.url(),
    side: z.enum(['source', 'destination']),
    endpointTypes: z.array(z.string().min(1)).min(1),
    timeoutMs: z.number().int().positive().max(300_000).optional(),
  }),
]);
export type ProvisionerConfig = z.infer<typeof ProvisionerConfigSchema>;

export const DataPlaneConfigSchema = z.object({
  instanceId: IdSchema,
  temporal: TemporalConnectionSchema.default(TEMPORAL_DEFAULTS),
  worker: WorkerRunSchema,
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
});
export type DataPlaneConfig = z.infer<typeof DataPlaneConfigSchema>;

export const DataPlaneInstanceSchema = z.object({
  id: IdSchema,
  transferTypes: z.array(TransferTypeSchema).min(1).default(['File-PUSH']),
});

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
  temporal: TemporalConnectionSchema.default(TEMPORAL_DEFAULTS),
  worker: WorkerRunSchema,
  /** The data-plane instances this control plane may use. */
  dataPlanes: z.array(DataPlaneInstanceSchema).min(1),
  /** Provider side: where each offered asset's bytes are. */
  assets: z.record(z.string().min(1), DataAddressSchema).default({}),
  transfer: TransferSettingsSchema.partial().default({}),
  secretKey: keyNotHere('FERRY_CODEC_KEYS'),
  /** The Dataspace Protocol over HTTP(S): off unless configured. */
  dsp: DspConfigSchema.optional(),
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
