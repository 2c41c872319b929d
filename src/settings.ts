import type { z } from 'zod';
import type { DataFlowSettingsSchema, TransferSettingsOverridesSchema, TransferSettingsSchema } from './schemas/settings.js';

/**
 * Timers and limits of TransferProcesses and DataFlows: their defaults and durations, without zod
 * (workflows import this module). The schemas that check them (ranges, strictness) are in
 * src/schemas/settings.ts and take their defaults from the objects below.
 */

export const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
export const DURATION = /^(\d{1,15})(ms|s|m|h|d)$/;
export type Duration = number | string;

/** Milliseconds of a duration. Pure, so workflows use it too. */
export function durationMs(d: Duration): number {
  if (typeof d === 'number') return d;
  const m = DURATION.exec(d);
  if (!m) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/**
 * Defaults of a TransferProcess's settings (the control-plane worker's config may change them; a
 * transfer may override any of them). What each means: src/schemas/settings.ts.
 */
export const TRANSFER_SETTINGS_DEFAULTS = {
  requestedTimeout: '5m',
  staleRetries: 3,
  callbackRetries: 3,
  retryInitialInterval: '1s',
  retryMaximumInterval: '1m',
  activityMaxAttempts: 7,
  counterpartyRetryBudget: '1h',
  counterpartyTimeout: '1h',
  suspendedTimeout: '30d',
} as const satisfies Record<string, Duration>;

/** Defaults of a DataFlow's settings (the data-plane worker's config may change them). */
export const DATA_FLOW_SETTINGS_DEFAULTS = {
  provisionTimeout: '10m',
  deprovisionTimeout: '10m',
  provisionMaxAttempts: 5,
  transferMaxAttempts: 10,
  transferHeartbeatTimeout: '30s',
  transferHeartbeatInterval: '1s',
  transferStartToCloseTimeout: '365d',
  callbackMaxAttempts: 7,
  idleTimeout: '30d',
  stopTimeout: '10s',
} as const satisfies Record<string, Duration>;

export type TransferSettings = z.infer<typeof TransferSettingsSchema>;
export type TransferSettingsOverrides = z.infer<typeof TransferSettingsOverridesSchema>;
export type DataFlowSettings = z.infer<typeof DataFlowSettingsSchema>;
