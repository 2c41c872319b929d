import { z } from 'zod';
import { DataAddressSchema } from './DataAddress.js';
import { IdSchema } from './ids.js';
import { DataFlowSettingsSchema, DurationSchema, TransferSettingsSchema } from './settings.js';
import { TransferTypeSchema } from './TransferProcess.js';

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
  temporal: TemporalConnectionSchema.default({ address: 'localhost:7233', namespace: 'default' }),
  /** The data-plane instances this control plane may use. */
  dataPlanes: z.array(DataPlaneInstanceSchema).min(1),
  /** Provider side: where each offered asset's bytes are. */
  assets: z.record(z.string().min(1), DataAddressSchema).default({}),
  transfer: TransferSettingsSchema.partial().default({}),
  /**
   * The connector watchdog (one workflow per connector): every `interval` it checks each STARTED
   * transfer's data flow and counterparty; a data plane or counterparty silent for `lostAfter`
   * ends the transfer.
   */
  watchdog: z
    .object({
      interval: DurationSchema.default('5m'),
      lostAfter: DurationSchema.default('15m'),
      /** How many transfers one sweep checks at a time. */
      parallelism: z.number().int().min(1).max(256).default(16),
    })
    .strict()
    .default({ interval: '5m', lostAfter: '15m', parallelism: 16 }),
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
