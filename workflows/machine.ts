// The small engine both workflows run on: events go through the workflow's table one at a time,
// and every wait (an activity, a timer) is an event when it ends. Deterministic; workflow code only.
import { ApplicationFailure, CancellationScope, isCancellation, sleep } from '@temporalio/workflow';
import { cellText, resolveCell, type Cell, type EventTable, type ResolvedCell } from '../src/EventTable.js';

/** How an update's caller is answered once its event has been handled. */
export interface Reply {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export interface Entry<E extends string> {
  event: E;
  data?: unknown;
  reply?: Reply;
}

/** What an action answers: a value for the update's caller, or `HELD` when it answers later itself. */
export const HELD = Symbol('held');

export interface MachineHost<S extends string, E extends string, A extends string, G extends string> {
  readonly table: EventTable<S, E, A, G>;
  state(): S;
  holds(guard: G): boolean;
  run(action: A, data: unknown, reply: Reply | undefined, event: E): unknown;
  note(text: string): void;
  /** Called once the events of one activation are handled (search attributes, details). */
  settled(): void;
  /** Refusal texts get the process id. */
  readonly label: string;
}

/** A refusal the caller sees as the update's failure. */
export const refusal = (message: string): ApplicationFailure => ApplicationFailure.create({ message, type: 'Refused', nonRetryable: true });

/**
 * Runs events through a host's table: `post` from handlers, timers and activity outcomes; each
 * event is handled to the end before the next (run-to-completion), deferred events are looked up
 * again whenever the state changes.
 */
export class Machine<S extends string, E extends string, A extends string, G extends string> {
  readonly #queue: Entry<E>[] = [];
  #deferred: Entry<E>[] = [];
  #draining = false;
  /** Events that came before the workflow could handle them (its settings are loaded first). */
  #held: Entry<E>[] | undefined = [];

  constructor(private readonly host: MachineHost<S, E, A, G>) {}

  /** The cell of `event` in the current state, guards decided. */
  cell(event: E): ResolvedCell<A> {
    return resolveCell(this.host.table[this.host.state()][event] as Cell<A, G>, (g) => this.host.holds(g));
  }

  /** For update validators: throws the table's refusal, so a refused update leaves no trace. */
  validate(event: E): void {
    const cell = this.cell(event);
    if ('refuse' in cell) throw new Error(this.text(cell.refuse, event));
  }

  post(event: E, data?: unknown, reply?: Reply): void {
    const entry: Entry<E> = { event, ...(data !== undefined ? { data } : {}), ...(reply ? { reply } : {}) };
    if (this.#held) this.#held.push(entry);
    else {
      this.#queue.push(entry);
      this.#drain();
    }
  }

  /** An update handler's body: the answer comes once the event is handled. */
  ask(event: E, data?: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => this.post(event, data, { resolve, reject }));
  }

  /** Is an event of this kind waiting for the machine to open? */
  holding(event: E): boolean {
    return !!this.#held?.some((e) => e.event === event);
  }

  /** From now on events are handled; those that came before are handled now, in order. */
  open(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    this.#queue.push(...held);
    this.#drain();
  }

  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (let entry = this.#queue.shift(); entry; entry = this.#queue.shift()) {
        const before = this.host.state();
        this.#handle(entry);
        if (this.host.state() !== before && this.#deferred.length) {
          // a new state: what was kept for later is looked up again, first and in order
          this.#queue.unshift(...this.#deferred);
          this.#deferred = [];
        }
      }
    } finally {
      this.#draining = false;
    }
    this.host.settled();
  }

  #handle(entry: Entry<E>): void {
    const cell = this.cell(entry.event);
    const reply = entry.reply;
    if ('refuse' in cell) {
      const text = this.text(cell.refuse, entry.event);
      if (reply) reply.reject(refusal(text));
      else this.host.note(text);
    } else if ('ignore' in cell) {
      if (!entry.event.startsWith('client.')) this.host.note(this.text(cell.ignore, entry.event));
      reply?.resolve(this.host.state());
    } else if ('defer' in cell) {
      // the caller learns it was accepted; the process acts on it once its state allows
      reply?.resolve(this.host.state());
      this.#deferred.push({ event: entry.event, ...(entry.data !== undefined ? { data: entry.data } : {}) });
    } else {
      let answer: unknown;
      try {
        answer = this.host.run(cell.do, entry.data, reply, entry.event);
      } catch (e) {
        if (reply && e instanceof ApplicationFailure) return reply.reject(e);
        throw e; // a bug: fail the workflow task loudly
      }
      if (answer !== HELD) reply?.resolve(answer === undefined ? this.host.state() : answer);
    }
  }

  private text(template: string, event: E): string {
    return cellText(template, this.host.state(), event).replaceAll('{pid}', this.host.label);
  }
}

/**
 * Named waits whose end is an event: timers and activities. Starting one under a name that is
 * running replaces it; an outcome that is not the current one for its name is dropped, so a
 * timer or call that was given up on can never be mistaken for the one the state waits for.
 */
export class Waits {
  #seq = 0;
  readonly #current = new Map<string, { id: number; scope?: CancellationScope; at?: number }>();

  /** A timer: `onFire` runs when it fires (unless cancelled or replaced first). */
  timer(name: string, ms: number, summary: string, onFire: () => void): void {
    this.stop(name);
    const id = ++this.#seq;
    const scope = new CancellationScope();
    this.#current.set(name, { id, scope, at: Date.now() + ms });
    scope.run(() => sleep(Math.max(1, ms), { summary })).then(
      () => {
        if (this.#current.get(name)?.id !== id) return;
        this.#current.delete(name);
        onFire();
      },
      (e: unknown) => {
        if (!isCancellation(e)) throw e;
      },
    );
  }

  /**
   * An activity (or any promise). `cancellable` waits run in their own scope so `cancel` can stop
   * them; the outcome of a cancelled one is still delivered (as a failure) unless it was `stop`ped.
   */
  call<T>(name: string, run: () => Promise<T>, onDone: (value: T) => void, onFail: (error: unknown) => void, opts: { cancellable?: boolean } = {}): void {
    const id = ++this.#seq;
    const scope = opts.cancellable ? new CancellationScope() : undefined;
    this.#current.set(name, { id, ...(scope ? { scope } : {}) });
    const promise = scope ? scope.run(run) : run();
    promise.then(
      (value) => {
        if (this.#current.get(name)?.id !== id) return;
        this.#current.delete(name);
        onDone(value);
      },
      (error: unknown) => {
        if (this.#current.get(name)?.id !== id) return;
        this.#current.delete(name);
        onFail(error);
      },
    );
  }

  running(name: string): boolean {
    return this.#current.has(name);
  }

  /** When a running timer fires (workflow time), for the details an operator reads. */
  firesAt(name: string): Date | undefined {
    const at = this.#current.get(name)?.at;
    return at === undefined ? undefined : new Date(at);
  }

  /** Asks a cancellable wait to stop; its outcome (usually a cancellation) still arrives. */
  cancel(name: string): void {
    this.#current.get(name)?.scope?.cancel();
  }

  /** Gives a wait up: cancelled if it can be, and its outcome never delivered. */
  stop(name: string): void {
    const current = this.#current.get(name);
    if (!current) return;
    this.#current.delete(name);
    current.scope?.cancel();
  }

  /** Names of the waits under way (for status). */
  names(): string[] {
    return [...this.#current.keys()];
  }
}
