/**
 * A workflow as a table of (state × event) → cell. Every cell says what happens when that event
 * reaches the workflow in that state:
 *
 *  - `{ do }`      run the named action (a short method of the workflow);
 *  - `{ ignore }`  accept and change nothing, with a note saying why;
 *  - `{ refuse }`  refuse with a reason (an update fails with it; the validator refuses it at once);
 *  - `{ defer }`   keep the event until the state changes, then look it up again.
 *
 * A cell may be guarded: `{ do, when, otherwise }` runs `do` when the named guard holds for this
 * workflow (its role, its transfer type) and `otherwise` when not. Guards are names, so the table
 * stays data that tests and docs can read; each workflow supplies their predicates.
 *
 * Pure data and pure functions: safe in workflow code.
 */
export type Cell<A extends string, G extends string = never> =
  | { do: A; when?: G; otherwise?: Cell<A, G> }
  | { ignore: string }
  | { refuse: string }
  | { defer: string };

export type EventTable<S extends string, E extends string, A extends string, G extends string = never> = Readonly<
  Record<S, Readonly<Record<E, Cell<A, G>>>>
>;

/** A cell with its guard decided: never a guarded `do` any more. */
export type ResolvedCell<A extends string> = { do: A } | { ignore: string } | { refuse: string } | { defer: string };

export function resolveCell<A extends string, G extends string>(cell: Cell<A, G>, holds: (guard: G) => boolean): ResolvedCell<A> {
  if ('do' in cell) {
    if (cell.when === undefined || holds(cell.when)) return { do: cell.do };
    return cell.otherwise ? resolveCell(cell.otherwise, holds) : { refuse: `not for this transfer (${cell.when})` };
  }
  return cell;
}

/** Fills `{state}` and `{event}` in a cell's reason. */
export function cellText(text: string, state: string, event: string): string {
  return text.replaceAll('{state}', state).replaceAll('{event}', event);
}

/** Every (state, event) pair of a table whose cell is not the given kind, for tests and docs. */
export function cellsOf<S extends string, E extends string, A extends string, G extends string>(
  table: EventTable<S, E, A, G>,
): { state: S; event: E; cell: Cell<A, G> }[] {
  return (Object.keys(table) as S[]).flatMap((state) => (Object.keys(table[state]) as E[]).map((event) => ({ state, event, cell: table[state][event] })));
}
