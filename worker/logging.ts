import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';
import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * Structured logs: one JSON line per event on stdout (pino). The SDK's Runtime logger (worker,
 * activity and workflow logs, and Core's logs forwarded) goes into the same stream, with the
 * ids the SDK attaches (workflowId, activityType, attempt, …) plus ferry's processId/flowId.
 */

export type FerryLogger = Logger;

export function createLogger(opts: { level?: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream } = {}): FerryLogger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { pid: process.pid, ...(opts.name ? { name: opts.name } : {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError, error: serializeError },
    },
    (opts.destination ?? pino.destination({ fd: 1, sync: true })) as never,
  );
}

/**
 * An error as one line of JSON: type and message (and the cause's), no stack. Stacks are for
 * defects, not for expected retries; set FERRY_LOG_STACKS=1 to have them anyway.
 */
export function serializeError(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { message: String(e) };
  const out: Record<string, unknown> = { type: (e as { type?: string }).type ?? e.name, message: e.message };
  if ((e as { nonRetryable?: boolean }).nonRetryable) out.nonRetryable = true;
  if (e.cause instanceof Error && e.cause.message !== e.message) out.cause = serializeError(e.cause);
  if (process.env.FERRY_LOG_STACKS) out.stack = e.stack;
  return out;
}

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' };

/** The SDK's Logger interface on top of pino: what `Runtime.install({ logger })` takes. */
export class PinoSdkLogger implements SdkLogger {
  /** `tee` also gets every entry (tests scan the SDK's logs for secrets). */
  constructor(
    private readonly logger: FerryLogger,
    private readonly tee?: (entry: { level: LogLevel; message: string; meta?: LogMetadata }) => void,
  ) {}

  log(level: LogLevel, message: string, meta: LogMetadata = {}): void {
    this.tee?.({ level, message, meta });
    const { error, err, ...rest } = meta as Record<string, unknown>;
    const fields: Record<string, unknown> = { ...rest };
    const failure = error ?? err;
    if (failure !== undefined) fields.err = failure;
    // the SDK stamps its own nanosecond timestamp; pino's `time` says the same in ISO
    delete fields[Symbol.for('log_timestamp') as unknown as string];
    this.logger[LEVELS[level]](fields, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}
