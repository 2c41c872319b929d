import { z } from 'zod';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d{1,15})(ms|s|m|h|d)$/;

/** A human form of milliseconds for messages: the largest unit that divides it. */
const show = (ms: number): string => {
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
};

/**
 * A Temporal duration as milliseconds or a string like "30s", "5m", within [min, max] (each setting
 * has its own range: "0s" or "999999999999d" is a mistake, not a setting).
 */
export const duration = (min: string, max: string) => {
  const [lo, hi] = [durationMs(min), durationMs(max)];
  return z
    .union([z.number().int(), z.string().regex(DURATION, 'duration must look like 500ms, 30s, 5m, 1h or 2d')])
    // zod runs refinements even after the union failed: never throw on input that did not parse
    .refine((d) => {
      const ms = typeof d === 'number' ? d : typeof d === 'string' && DURATION.test(d) ? durationMs(d) : NaN;
      return ms >= lo && ms <= hi;
    }, `duration must be between ${show(lo)} and ${show(hi)}`);
};
/** Any duration from 1 ms to a year. */
export const DurationSchema = duration('1ms', '366d');
export type Duration = number | string;

/** Milliseconds of a duration. Pure, so workflows use it too. */
export function durationMs(d: Duration): number {
  if (typeof d === 'number') return d;
  const m = DURATION.exec(d);
  if (!m) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/**
 * Timers and limits of a TransferProcess. Defaults come from the control-plane worker's config;
 * a transfer may override any of them.
 */
export const TransferSettingsSchema = z.strictObject({
  /** How long a `*_REQUESTED` state waits for the data plane's callback before it is stale. */
  requestedTimeout: duration('1s', '7d').default('5m'),
  /** How many times a stale wait asks the data plane again before the process is terminated. */
  staleRetries: z.number().int().min(0).max(20).default(3),
  /** How many times a failed callback (provisioning failed) re-sends the signaling call. */
  callbackRetries: z.number().int().min(0).max(20).default(3),
  /** Backoff between those re-sends: initial, doubled each time, capped by the maximum. */
  retryInitialInterval: duration('100ms', '1h').default('1s'),
  retryMaximumInterval: duration('100ms', '1d').default('1m'),
  /** Attempts of each data-plane call, with exponential backoff (1 s doubling, at most 1 m apart). */
  activityMaxAttempts: z.number().int().min(1).max(50).default(7),
  /**
   * How long a message to the counterparty is retried (backoff 1 s doubling, at most 1 m apart)
   * while it is unreachable, before the process gives up on it. A refusal (4xx) is final at once.
   */
  counterpartyRetryBudget: duration('1s', '30d').default('1h'),
  /** How long the consumer waits in REQUESTED for the provider to start the transfer. */
  counterpartyTimeout: duration('1s', '90d').default('1h'),
  /** How long a suspended process waits to be resumed before it is terminated. */
  suspendedTimeout: duration('1s', '366d').default('30d'),
});
export type TransferSettings = z.infer<typeof TransferSettingsSchema>;
export const TransferSettingsOverridesSchema = TransferSettingsSchema.partial();
export type TransferSettingsOverrides = z.infer<typeof TransferSettingsOverridesSchema>;

/** Timers and limits of a DataFlow, from the data-plane worker's config. */
export const DataFlowSettingsSchema = z.strictObject({
  /** How long a pending provisioner may take to call back. */
  provisionTimeout: duration('1s', '7d').default('10m'),
  /** How long a pending deprovisioner may take to call back. */
  deprovisionTimeout: duration('1s', '7d').default('10m'),
  /** Attempts of provision/deprovision activities. */
  provisionMaxAttempts: z.number().int().min(1).max(50).default(5),
  /**
   * Attempts in a row of one transfer that move no bytes before it fails (a retry resumes from the
   * last heartbeated offset; an attempt that moved bytes starts the count again).
   */
  transferMaxAttempts: z.number().int().min(1).max(50).default(10),
  /** A transfer whose heartbeats stop for this long is taken as dead (its worker crashed) and retried. */
  transferHeartbeatTimeout: duration('1s', '1h').default('30s'),
  /**
   * How often a running transfer heartbeats, whatever its bytes do. Heartbeat answers carry
   * cancellation (suspend, terminate, a lost lease), so this bounds how fast a copy stops.
   */
  transferHeartbeatInterval: duration('50ms', '10m').default('1s'),
  /** The longest one transfer run may take (start to close): a bound, not a lifetime; heartbeats detect a dead worker. */
  transferStartToCloseTimeout: duration('1m', '3650d').default('365d'),
  /** Attempts of each callback to the control plane. */
  callbackMaxAttempts: z.number().int().min(1).max(50).default(7),
  /** How long a suspended or failed flow waits for resume, retry or terminate. */
  idleTimeout: duration('1s', '366d').default('30d'),
  /**
   * Suspend or terminate of a running transfer that holds nothing to release: how long the call
   * waits for the transfer to stop before it answers "async" (and calls back once it stopped).
   */
  stopTimeout: duration('100ms', '1h').default('10s'),
});
export type DataFlowSettings = z.infer<typeof DataFlowSettingsSchema>;
