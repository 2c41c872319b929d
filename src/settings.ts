import { z } from 'zod';

/** A Temporal duration as milliseconds or a string like "30s", "5m". */
export const DurationSchema = z.union([
  z.number().int().positive(),
  z.string().regex(/^\d+(ms|s|m|h|d)$/, 'duration must look like 500ms, 30s, 5m, 1h or 2d'),
]);
export type Duration = z.infer<typeof DurationSchema>;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Milliseconds of a duration. Pure, so workflows use it too. */
export function durationMs(d: Duration): number {
  if (typeof d === 'number') return d;
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(d);
  if (!m) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/**
 * Timers and limits of a TransferProcess. Defaults come from the control-plane worker's config;
 * a transfer may override any of them.
 */
export const TransferSettingsSchema = z.object({
  /** How long a `*_REQUESTED` state waits for the data plane's callback before it is stale. */
  requestedTimeout: DurationSchema.default('5m'),
  /** How many times a stale wait asks the data plane again before the process is terminated. */
  staleRetries: z.number().int().min(0).max(20).default(3),
  /** How many times a failed callback (provisioning failed) re-sends the signaling call. */
  callbackRetries: z.number().int().min(0).max(20).default(3),
  /** Backoff between those re-sends: initial, doubled each time, capped by the maximum. */
  retryInitialInterval: DurationSchema.default('1s'),
  retryMaximumInterval: DurationSchema.default('1m'),
  /** Attempts of each data-plane call, with exponential backoff (1 s doubling, at most 1 m apart). */
  activityMaxAttempts: z.number().int().min(1).max(50).default(7),
  /**
   * How long a message to the counterparty is retried (backoff 1 s doubling, at most 1 m apart)
   * while it is unreachable, before the process gives up on it. A refusal (4xx) is final at once.
   */
  counterpartyRetryBudget: DurationSchema.default('1h'),

  /** How long the consumer waits in REQUESTED for the provider to start the transfer. */
  counterpartyTimeout: DurationSchema.default('1h'),
  /** How long a suspended process waits to be resumed before it is terminated. */
  suspendedTimeout: DurationSchema.default('30d'),
});
export type TransferSettings = z.infer<typeof TransferSettingsSchema>;
export const TransferSettingsOverridesSchema = TransferSettingsSchema.partial();
export type TransferSettingsOverrides = z.infer<typeof TransferSettingsOverridesSchema>;

/** Timers and limits of a DataFlow, from the data-plane worker's config. */
export const DataFlowSettingsSchema = z.object({
  /** How long a pending provisioner may take to call back. */
  provisionTimeout: DurationSchema.default('10m'),
  /** How long a pending deprovisioner may take to call back. */
  deprovisionTimeout: DurationSchema.default('10m'),
  /** Attempts of provision/deprovision activities. */
  provisionMaxAttempts: z.number().int().min(1).max(50).default(5),
  /** Attempts of one transfer (a retry resumes from the last heartbeated offset). */
  transferMaxAttempts: z.number().int().min(1).max(50).default(10),
  /** A transfer that reports no progress for this long is taken as dead and retried. */
  transferHeartbeatTimeout: DurationSchema.default('30s'),
  /** Attempts of each callback to the control plane. */
  callbackMaxAttempts: z.number().int().min(1).max(50).default(7),
  /** How long a suspended or failed flow waits for resume, retry or terminate. */
  idleTimeout: DurationSchema.default('30d'),
  /**
   * Suspend or terminate of a running transfer that holds nothing to release: how long the call
   * waits for the transfer to stop before it answers "async" (and calls back once it stopped).
   */
  stopTimeout: DurationSchema.default('10s'),
});
export type DataFlowSettings = z.infer<typeof DataFlowSettingsSchema>;
