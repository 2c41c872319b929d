// Small helpers both workflows share; all deterministic.
import { ActivityFailure, condition } from '@temporalio/workflow';
import { durationMs, type Duration } from '../src/settings.js';

/** Milliseconds of a settings duration (deterministic; safe in workflow code). */
export const toMs = durationMs;

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
