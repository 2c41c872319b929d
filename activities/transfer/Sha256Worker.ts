import os from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * SHA-256 off the event loop. Hashing (about 1.8 GB/s with SHA-NI) was the data path's bottleneck:
 * on the event loop it ran one after the other with the socket writes of a push and beside the
 * reads and writes of a copy. Here each transfer's hash runs in a worker thread, while the event
 * loop and libuv's threads move the bytes; the digest is the same.
 *
 * A small pool of threads (cores - 1, at least 1, at most 4) holds the hash state of every running
 * transfer; one transfer's updates go to one thread in order. Each update is a copy of the chunk
 * (moved, not cloned, to the thread), so the caller may reuse its buffer as soon as `update`
 * returns; the promise it returns settles once the chunk is hashed (backpressure).
 */
export interface Sha256 {
  /** Hashes `chunk` (copied now); resolves once it is hashed. */
  update(chunk: Uint8Array): Promise<void>;
  /** Resolves with the hex digest of everything updated so far; the hash is then finished. */
  digest(): Promise<string>;
  /** Releases the state without a digest (an aborted transfer). */
  dispose(): void;
}

const WORKER_CODE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  try {
    if (m.op === 'update') {
      let h = hashes.get(m.key);
      if (!h) hashes.set(m.key, (h = createHash('sha256')));
      h.update(m.chunk);
      parentPort.postMessage({ id: m.id });
    } else if (m.op === 'digest') {
      const h = hashes.get(m.key) ?? createHash('sha256');
      hashes.delete(m.key);
      parentPort.postMessage({ id: m.id, hex: h.digest('hex') });
    } else if (m.op === 'dispose') {
      hashes.delete(m.key);
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String(e && e.message || e) });
  }
});
`;

interface Pending {
  resolve(hex?: string): void;
  reject(e: Error): void;
}

class HashThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #refs = 0;
  broken: Error | undefined;

  constructor() {
    this.#worker = new Worker(WORKER_CODE, { eval: true });
    this.#worker.unref();
    this.#worker.on('message', (m: { id: number; hex?: string; error?: string }) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.error) p.reject(new Error(`sha256 worker: ${m.error}`));
      else p.resolve(m.hex);
    });
    const fail = (e: Error) => {
      this.broken = e;
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`sha256 worker exited (${code})`)));
  }

  get load(): number {
    return this.#refs;
  }

  acquire(): void {
    this.#refs++;
  }

  release(): void {
    this.#refs--;
  }

  send(message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<string | undefined> {
    if (this.broken) return Promise.reject(this.broken);
    const id = this.#nextId++;
    // referenced while an answer is awaited (else a script could exit under it), idle otherwise
    if (this.#pending.size === 0) this.#worker.ref();
    return new Promise<string | undefined>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id }, transfer);
    }).finally(() => {
      if (this.#pending.size === 0) this.#worker.unref();
    });
  }

  post(message: Record<string, unknown>): void {
    if (!this.broken) this.#worker.postMessage(message);
  }
}

const POOL_SIZE = Math.max(1, Math.min(4, (os.availableParallelism?.() ?? os.cpus().length) - 1));
const pool: HashThread[] = [];
let keys = 0;

function thread(): HashThread {
  for (let i = pool.length - 1; i >= 0; i--) if (pool[i]!.broken) pool.splice(i, 1);
  if (pool.length < POOL_SIZE) {
    const t = new HashThread();
    pool.push(t);
    return t;
  }
  return pool.reduce((a, b) => (b.load < a.load ? b : a));
}

/** A new SHA-256 computed in the pool. */
export function sha256Worker(): Sha256 {
  const t = thread();
  t.acquire();
  const key = keys++;
  let done = false;
  const finish = () => {
    if (!done) {
      done = true;
      t.release();
    }
  };
  return {
    async update(chunk) {
      if (done) throw new Error('sha256: update after digest');
      // a copy the thread owns: the caller's buffer is free again at once
      const copy = new Uint8Array(chunk);
      await t.send({ op: 'update', key, chunk: copy }, [copy.buffer]);
    },
    async digest() {
      if (done) throw new Error('sha256: digest twice');
      try {
        return (await t.send({ op: 'digest', key }))!;
      } finally {
        finish();
      }
    },
    dispose() {
      if (done) return;
      t.post({ op: 'dispose', key });
      finish();
    },
  };
}
