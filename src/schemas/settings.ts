import { z } from 'zod';
import { DATA_FLOW_SETTINGS_DEFAULTS as DF, DURATION, durationMs, TRANSFER_SETTINGS_DEFAULTS as TP, UNIT_MS } from '../settings.js';

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
/** The fields with their defaults from a plain object (src/settings.ts: one source of truth). */
function withDefaults<F extends Record<string, z.ZodType>>(fields: F, defaults: { [K in keyof F]: z.output<F[K]> }) {
  return Object.fromEntries(Object.entries(fields).map(([k, schema]) => [k, schema.default(defaults[k] as never)])) as {
    [K in keyof F]: z.ZodDefault<F[K]>;
  };
}

/** Any duration from 1 ms to a year. */
export const DurationSchema = duration('1ms', '366d');

/**
 * Timers and limits of a TransferProcess. Defaults (src/settings.ts) come from the control-plane
 * worker's config; a transfer may override any of them.
 */
const transferFields = {
  /** How long a `*_REQUESTED` state waits for the data plane's callback before it is stale. */
  requestedTimeout: duration('1s', '7d'),
  /** How many times a stale wait asks the data plane again before the process is terminated. */
  staleRetries: z.number().int().min(0).max(20),
  /** How many times a failed callback (provisioning failed) re-sends the signaling call. */
  callbackRetries: z.number().int().min(0).max(20),
  /** Backoff between those re-sends: initial, doubled each time, capped by the maximum. */
  retryInitialInterval: duration('100ms', '1h'),
  retryMaximumInterval: duration('100ms', '1d'),
  /** Attempts of each data-plane call, with exponential backoff (1 s doubling, at most 1 m apart). */
  activityMaxAttempts: z.number().int().min(1).max(50),
  /**
   * How long a message to the counterparty is retried (backoff 1 s doubling, at most 1 m apart)
   * while it is unreachable, before the process gives up on it. A refusal (4xx) is final at once.
   */
  counterpartyRetryBudget: duration('1s', '30d'),
  /** How long the consumer waits in REQUESTED for the provider to start the transfer. */
  counterpartyTimeout: duration('1s', '90d'),
  /** How long a suspended process waits to be resumed before it is terminated. */
  suspendedTimeout: duration('1s', '366d'),
};

/** Every setting, each absent one its default. */
export const TransferSettingsSchema = z.strictObject(withDefaults(transferFields, TP));
/**
 * A transfer's overrides: only what it names (the worker's config gives the rest), so no defaults
 * here (zod's `.partial()` of the schema above would fill in every one).
 */
export const TransferSettingsOverridesSchema = z.strictObject(transferFields).partial();

/** Timers and limits of a DataFlow, from the data-plane worker's config (defaults: src/settings.ts). */
export const DataFlowSettingsSchema = z.strictObject({
  /** How long a pending provisioner may take to call back. */
  provisionTimeout: duration('1s', '7d').default(DF.provisionTimeout),
  /** How long a pending deprovisioner may take to call back. */
  deprovisionTimeout: duration('1s', '7d').default(DF.deprovisionTimeout),
  /** Attempts of provision/deprovision activities. */
  provisionMaxAttempts: z.number().int().min(1).max(50).default(DF.provisionMaxAttempts),
  /**
   * Attempts in a row of one transfer that move no bytes before it fails (a retry resumes from the
   * last heartbeated offset; an attempt that moved bytes starts the count again).
   */
  transferMaxAttempts: z.number().int().min(1).max(50).default(DF.transferMaxAttempts),
  /** A transfer whose heartbeats stop for this long is taken as dead (its worker crashed) and retried. */
  transferHeartbeatTimeout: duration('1s', '1h').default(DF.transferHeartbeatTimeout),
  /**
   * How often a running transfer heartbeats, whatever its bytes do. Heartbeat answers carry
   * cancellation (suspend, terminate, a lost lease), so this bounds how fast a copy stops.
   */
  transferHeartbeatInterval: duration('50ms', '10m').default(DF.transferHeartbeatInterval),
  /** The longest one transfer run may take (start to close): a bound, not a lifetime; heartbeats detect a dead worker. */
  transferStartToCloseTimeout: duration('1m', '3650d').default(DF.transferStartToCloseTimeout),
  /** Attempts of each callback to the control plane. */
  callbackMaxAttempts: z.number().int().min(1).max(50).default(DF.callbackMaxAttempts),
  /** How long a suspended or failed flow waits for resume, retry or terminate. */
  idleTimeout: duration('1s', '366d').default(DF.idleTimeout),
  /**
   * Suspend or terminate of a running transfer that holds nothing to release: how long the call
   * waits for the transfer to stop before it answers "async" (and calls back once it stopped).
   */
  stopTimeout: duration('100ms', '1h').default(DF.stopTimeout),
});
