// Small helpers both workflows share; all deterministic.
import { ActivityFailure, condition } from '@temporalio/workflow';
import type { Duration } from '../src/settings.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Milliseconds of a settings duration (deterministic; safe in workflow code). */
export function toMs(d: Duration): number {
  if (typeof d === 'number') return d;
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(d);
  if (!m) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/** Exponential backoff: initial × 2^(attempt-1), capped. */
export function backoffMs(attempt: number, initial: Duration, maximum: Duration): number {
  return Math.min(toMs(initial) * 2 ** Math.max(0, attempt - 1), toMs(maximum));
}

/** `condition` with an optional timer: true when `fn` held, false when the timer fired first. */
export async function waitUntil(fn: () => boolean, timeoutMs?: number): Promise<boolean> {
  if (timeoutMs === undefined) {
    await condition(fn);
    return true;
  }
  return condition(fn, timeoutMs);
}

/** The message of a failure, looking through the activity wrapper to its cause. */
export function message(e: unknown): string {
  if (e instanceof ActivityFailure && e.cause) return e.cause.message;
  return e instanceof Error ? e.message : String(e);
}

/** Workflow time: deterministic, replay-safe. */
export function now(): string {
  return new Date(Date.now()).toISOString();
}
