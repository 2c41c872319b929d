/** Errors of the data path; the activity layer maps them onto Temporal failures. */

/** A transfer no retry can fix (bad address, missing source, refused destination): non-retryable. */
export class TransferRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransferRejected';
  }
}

/** Thrown when the cancellation signal aborts a transfer; partial data is left for a resume. `cause` is the signal's reason. */
export class TransferAborted extends Error {
  readonly bytes: number;
  constructor(bytes: number, reason: unknown) {
    super(`transfer aborted after ${bytes} bytes`, { cause: reason });
    this.name = 'AbortError';
    this.bytes = bytes;
  }
}

/** This attempt lost its lease: a newer attempt took its partial file over. It must not write again. */
export class AttemptSuperseded extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AttemptSuperseded';
  }
}

/**
 * Resolves or rejects with `work`, or rejects with TransferAborted as soon as `signal` aborts, so a
 * blocking read, write or wait never holds a cancelled transfer. (The operation itself may finish
 * in the background; callers never use its result then.)
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined, bytesSoFar: () => number): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(new TransferAborted(bytesSoFar(), signal.reason));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => undefined);
      reject(new TransferAborted(bytesSoFar(), signal.reason));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
