import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * What a DPS endpoint must remember across restarts, kept in small JSON files under a state
 * directory: the registrations peers made (`PUT /controlplanes`, `PUT /dataplanes`) and which
 * prepare/start calls were answered 202 (only those get a callback).
 */
export class JsonRecords<T> {
  readonly #records = new Map<string, T>();
  readonly #file: string | undefined;

  constructor(dir: string | undefined, name: string) {
    this.#file = dir ? path.join(dir, `${name}.json`) : undefined;
    if (!this.#file) return;
    mkdirSync(dir!, { recursive: true });
    try {
      for (const [k, v] of Object.entries(JSON.parse(readFileSync(this.#file, 'utf8')) as Record<string, T>)) this.#records.set(k, v);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read ${this.#file}: ${(e as Error).message}`);
    }
  }

  get(key: string): T | undefined {
    return this.#records.get(key);
  }
  values(): T[] {
    return [...this.#records.values()];
  }
  set(key: string, value: T): void {
    this.#records.set(key, value);
    this.#save();
  }
  delete(key: string): boolean {
    const had = this.#records.delete(key);
    if (had) this.#save();
    return had;
  }

  #save(): void {
    if (!this.#file) return;
    const tmp = `${this.#file}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.#records)), { mode: 0o600 });
    renameSync(tmp, this.#file);
  }

  /** Removes the state file (tests). */
  clear(): void {
    this.#records.clear();
    if (this.#file) rmSync(this.#file, { force: true });
  }
}

/**
 * Which async calls await a callback. A prepare/start first is `deciding` (the API waits a moment
 * for provisioning that needs nobody else), then `async` (answered 202: the callback goes out) or
 * dropped (answered 200: the answer said it all). A callback that finds its call still deciding
 * waits for the decision.
 */
export class PendingCallbacks {
  readonly #deciding = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  readonly #async: JsonRecords<number>;

  constructor(dir: string | undefined) {
    this.#async = new JsonRecords<number>(dir, 'pending-callbacks');
  }

  static key = (workflowId: string, op: string): string => `${workflowId}#${op}`;

  deciding(key: string): void {
    if (this.#deciding.has(key)) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#deciding.set(key, { promise, resolve });
  }

  decide(key: string, async: boolean): void {
    if (async) this.#async.set(key, Date.now());
    else this.#async.delete(key);
    const d = this.#deciding.get(key);
    this.#deciding.delete(key);
    d?.resolve();
  }

  /** Should the callback of this call go out? (`sent` clears the mark once it went.) */
  async wanted(key: string, maxWaitMs: number): Promise<boolean> {
    const d = this.#deciding.get(key);
    if (d) await Promise.race([d.promise, new Promise((r) => setTimeout(r, maxWaitMs).unref())]);
    if (this.#deciding.has(key)) return true; // undecided (a request that died): better a callback than none
    return this.#async.get(key) !== undefined;
  }

  sent(key: string): void {
    this.#async.delete(key);
  }
}
