import { AttemptSuperseded, TransferAborted, TransferRejected } from './errors.js';

/**
 * One attempt of the `transfer` activity: what it heartbeats, on a timer, and how its budget is
 * kept. Heartbeats go out every `heartbeatIntervalMs` whatever the bytes do (a 64 KiB/s source, an
 * fsync of gigabytes, a resume check), carrying the resume point; their answers carry cancellation
 * (suspend, terminate, lost lease) back to the attempt.
 *
 * Budget: `maxAttemptsWithoutProgress` counts attempts in a row that moved no bytes. Progress is
 * reaching further than any attempt before (`highWater`): an attempt that only sends again what an
 * earlier one sent (an HTTP sink that cannot resume, then fails again) has not progressed, so a sink
 * that always fails spends the budget. An attempt that progressed records its number in the
 * heartbeat (`lastProgressAttempt`); a later attempt that finds too many attempts since fails for good. A failure after progress asks for the next attempt
 * at once (`nextRetryDelay`), so the backoff starts over too.
 */

/** What the transfer activity heartbeats: the resume point and the budget's state. */
export interface TransferProgress {
  /** Bytes moved that a retry can resume from (File: in the `.part` of `part`; HttpData: sent). */
  offset: number;
  /** File: the attempt tag whose `.part` holds those bytes. */
  part?: string;
  /** The attempt that sent this heartbeat. */
  attempt: number;
  /** The latest attempt that moved bytes (0: none yet). */
  lastProgressAttempt: number;
  /** The furthest offset any attempt reached (bytes past it are progress). */
  highWater?: number;
  phase: string;
}

export interface AttemptOptions {
  attempt: number;
  /** The heartbeat details of the last attempt that heartbeated, if any. */
  previous: unknown;
  heartbeat: (details: TransferProgress) => void;
  heartbeatIntervalMs: number;
  /** Attempts in a row without progress before the transfer fails for good. */
  maxAttemptsWithoutProgress: number;
}

/** A retryable failure that asks for the next attempt after `retryAfterMs` (ApplicationFailure's nextRetryDelay). */
export class RetryAfterProgress extends Error {
  constructor(
    readonly error: Error,
    readonly retryAfterMs: number,
  ) {
    super(error.message, { cause: error });
    this.name = 'RetryAfterProgress';
  }
}

/** The attempt budget is spent: no retry. */
export class BudgetExhausted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BudgetExhausted';
  }
}

export function progressOf(details: unknown): TransferProgress | undefined {
  if (!details || typeof details !== 'object') return undefined;
  const d = details as Partial<TransferProgress>;
  if (typeof d.offset !== 'number' || !Number.isSafeInteger(d.offset) || d.offset < 0) return undefined;
  return {
    offset: d.offset,
    ...(typeof d.part === 'string' ? { part: d.part } : {}),
    attempt: typeof d.attempt === 'number' ? d.attempt : 0,
    lastProgressAttempt: typeof d.lastProgressAttempt === 'number' ? d.lastProgressAttempt : 0,
    ...(typeof d.highWater === 'number' && Number.isSafeInteger(d.highWater) && d.highWater >= 0 ? { highWater: d.highWater } : {}),
    phase: typeof d.phase === 'string' ? d.phase : 'unknown',
  };
}

const MOVING = new Set(['copying', 'sending', 'syncing', 'done']);

export class TransferAttempt {
  readonly previous: TransferProgress | undefined;
  #current: TransferProgress;
  /** Where this attempt's bytes began to move (its first copying/sending report). */
  #base: number | undefined;
  /** The furthest any earlier attempt got: only bytes past it (and past #base) are progress. */
  #reached: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: AttemptOptions) {
    this.previous = progressOf(opts.previous);
    const last = this.previous?.lastProgressAttempt ?? 0;
    this.#reached = Math.max(this.previous?.highWater ?? 0, this.previous?.offset ?? 0);
    this.#current = {
      offset: this.previous?.offset ?? 0,
      ...(this.previous?.part ? { part: this.previous.part } : {}),
      attempt: opts.attempt,
      lastProgressAttempt: last,
      highWater: this.#reached,
      phase: 'starting',
    };
  }

  /** Attempts since the last one that moved bytes, this one excluded: all of them failed. */
  get failuresWithoutProgress(): number {
    return Math.max(0, this.opts.attempt - 1 - this.#current.lastProgressAttempt);
  }

  get progressed(): boolean {
    return this.#current.lastProgressAttempt === this.opts.attempt;
  }

  /** Starts the heartbeat timer (first beat now, so even an attempt that dies early is counted). */
  start(): void {
    if (this.failuresWithoutProgress >= this.opts.maxAttemptsWithoutProgress) {
      throw new BudgetExhausted(`${this.failuresWithoutProgress} attempts in a row moved no bytes (transferMaxAttempts ${this.opts.maxAttemptsWithoutProgress})`);
    }
    this.beat();
    this.#timer = setInterval(() => this.beat(), this.opts.heartbeatIntervalMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Where the copy is; cheap, called per chunk. The first report of a moving phase (copying,
   * sending) gives where this attempt started: only bytes past it are progress.
   */
  update(p: { offset: number; part?: string; phase: string }): void {
    const moving = MOVING.has(p.phase);
    if (moving && this.#base === undefined) this.#base = p.offset;
    const moved = moving && p.offset > this.#base! && p.offset > this.#reached;
    this.#current = {
      offset: p.offset,
      ...(p.part ? { part: p.part } : {}),
      attempt: this.opts.attempt,
      lastProgressAttempt: moved ? this.opts.attempt : this.#current.lastProgressAttempt,
      highWater: Math.max(this.#current.highWater ?? 0, moving ? p.offset : 0),
      phase: p.phase,
    };
  }

  /** Forgets this attempt's progress (the bytes it moved are worth nothing, e.g. the source changed). */
  forgetProgress(): void {
    this.#reached = 0;
    this.#current = { ...this.#current, offset: 0, highWater: 0, lastProgressAttempt: this.previous?.lastProgressAttempt ?? 0 };
  }

  get details(): TransferProgress {
    return this.#current;
  }

  beat(): void {
    this.opts.heartbeat(this.#current);
  }

  /**
   * What a failure of this attempt becomes: deterministic refusals stay final; cancellation passes
   * through; anything else is retried, at once when this attempt moved bytes.
   */
  failure(e: unknown): unknown {
    if (e instanceof TransferRejected || e instanceof TransferAborted || e instanceof AttemptSuperseded || !(e instanceof Error)) return e;
    this.beat(); // the resume point a retry needs
    return this.progressed ? new RetryAfterProgress(e, 1000) : e;
  }
}
