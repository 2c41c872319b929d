import { setTimeout as sleep } from 'node:timers/promises';
import { TransferAborted } from './errors.js';

/**
 * Token bucket holding at most a tenth of a second of traffic, so the rate is smooth and every wait
 * is short (an abort is noticed at once: the wait itself is aborted).
 */
export class TokenBucket {
  readonly capacity: number;
  #tokens: number;
  #last = performance.now();

  constructor(readonly rate: number) {
    this.capacity = Math.max(1, Math.floor(rate / 10));
    this.#tokens = this.capacity;
  }

  async take(n: number, signal: AbortSignal | undefined, bytesSoFar: () => number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.#tokens = Math.min(this.capacity, this.#tokens + ((now - this.#last) / 1000) * this.rate);
      this.#last = now;
      if (this.#tokens >= n) {
        this.#tokens -= n;
        return;
      }
      const waitMs = Math.ceil(((n - this.#tokens) / this.rate) * 1000);
      try {
        await sleep(Math.min(waitMs, 1000), undefined, { signal });
      } catch {
        throw new TransferAborted(bytesSoFar(), signal?.reason);
      }
    }
  }

  /** Takes `n` bytes of any size: a chunk larger than the bucket goes in bucket-sized bites. */
  async takeBytes(n: number, signal: AbortSignal | undefined, bytesSoFar: () => number): Promise<void> {
    for (let left = n; left > 0; left -= this.capacity) await this.take(Math.min(left, this.capacity), signal, bytesSoFar);
  }
}
