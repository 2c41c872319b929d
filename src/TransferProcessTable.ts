import type { Cell, EventTable } from './EventTable.js';
import type { TransferProcessState } from './TransferProcessState.js';

/**
 * The TransferProcess workflow as a table: for every state, what each event does there.
 * `workflows/TransferProcessWorkflow.ts` runs it (each action is a short method of the workflow),
 * and the update validators read the same cells, so a command refused at once and a command
 * refused later say the same thing. A race between two events is a row, never a flag.
 *
 * Events:
 *  - client commands (Temporal updates): client.suspend, client.resume, client.terminate,
 *    client.complete, client.start (let a provider held for approval start);
 *  - counterparty messages (DSP): peer.request (a re-sent TransferRequestMessage), peer.start,
 *    peer.suspension, peer.completion, peer.termination;
 *  - the data plane: dataPlane.answered / dataPlane.unreachable (the signaling call's answer, or
 *    its failure after retries), dataPlane.calledBack (the callback a `*_REQUESTED` state waits for),
 *    dataPlane.transferred (a push's bytes are verified, or the transfer failed);
 *  - counterparty.took / counterparty.unreachable (a message we sent was taken, or could not be
 *    delivered within its retry budget);
 *  - timers: timer.stale (a `*_REQUESTED` wait went stale), stale.probed (the data plane said
 *    where the flow is), timer.retry (backoff before re-sending a call whose callback failed),
 *    timer.deadline (REQUESTED or SUSPENDED waited too long);
 *  - watchdog.alarm (STARTED: the data flow or the counterparty is gone, or ended without telling us).
 */
export const TRANSFER_PROCESS_EVENTS = [
  'client.suspend',
  'client.resume',
  'client.terminate',
  'client.complete',
  'client.start',
  'peer.request',
  'peer.start',
  'peer.suspension',
  'peer.completion',
  'peer.termination',
  'dataPlane.answered',
  'dataPlane.unreachable',
  'dataPlane.calledBack',
  'dataPlane.transferred',
  'counterparty.took',
  'counterparty.unreachable',
  'timer.stale',
  'stale.probed',
  'timer.retry',
  'timer.deadline',
  'watchdog.alarm',
] as const;
export type TransferProcessEvent = (typeof TRANSFER_PROCESS_EVENTS)[number];

export type TransferProcessAction =
  | 'admitRequest'
  | 'approve'
  | 'startByPeer'
  | 'takeStart'
  | 'suspend'
  | 'suspendByPeer'
  | 'resume'
  | 'complete'
  | 'completeByPeer'
  | 'completeWhileSuspending'
  | 'bytesArrived'
  | 'terminate'
  | 'terminateByPeer'
  | 'deadlinePassed'
  | 'answered'
  | 'dataPlaneDown'
  | 'calledBack'
  | 'staleCheck'
  | 'probed'
  | 'resend'
  | 'took'
  | 'notTaken'
  | 'alarm';

/** Guards: `pull` (an HttpData-PULL), `consumer`, `provider`. */
export type TransferProcessGuard = 'pull' | 'consumer' | 'provider';

type TPCell = Cell<TransferProcessAction, TransferProcessGuard>;
type Row = Record<TransferProcessEvent, TPCell>;

const refuseCommand = (verb: string): TPCell => ({ refuse: `cannot ${verb} transfer process {pid} in state {state}` });
const refuseMessage = (type: string): TPCell => ({ refuse: `cannot accept ${type} for transfer process {pid} in state {state}` });
const late = (what: string): TPCell => ({ ignore: `late ${what} ignored in {state}` });

/** What an event does in a state that does not name it. */
const DEFAULTS: Row = {
  'client.suspend': refuseCommand('suspend'),
  'client.resume': refuseCommand('resume'),
  'client.terminate': refuseCommand('terminate'),
  'client.complete': refuseCommand('complete'),
  'client.start': refuseCommand('start'),
  // a re-sent request always gets the process's real state
  'peer.request': { do: 'admitRequest' },
  'peer.start': refuseMessage('TransferStartMessage'),
  'peer.suspension': refuseMessage('TransferSuspensionMessage'),
  'peer.completion': refuseMessage('TransferCompletionMessage'),
  'peer.termination': refuseMessage('TransferTerminationMessage'),
  'dataPlane.answered': late('data-plane answer'),
  'dataPlane.unreachable': late('data-plane failure'),
  'dataPlane.calledBack': late('data-plane callback'),
  'dataPlane.transferred': late('end of transfer'),
  'counterparty.took': late('counterparty answer'),
  'counterparty.unreachable': late('counterparty failure'),
  'timer.stale': late('stale timer'),
  'stale.probed': late('stale probe'),
  'timer.retry': late('retry timer'),
  'timer.deadline': late('deadline'),
  'watchdog.alarm': late('watchdog alarm'),
};

const row = (cells: Partial<Row>): Row => ({ ...DEFAULTS, ...cells });

/** A data-plane signaling call is in flight or awaited: its answer, callback, stale timer and retries. */
const CALLING: Partial<Row> = {
  'dataPlane.answered': { do: 'answered' },
  'dataPlane.unreachable': { do: 'dataPlaneDown' },
  'dataPlane.calledBack': { do: 'calledBack' },
  'timer.stale': { do: 'staleCheck' },
  'stale.probed': { do: 'probed' },
  'timer.retry': { do: 'resend' },
};
/** A message to the counterparty is in flight. */
const SENDING: Partial<Row> = {
  'counterparty.took': { do: 'took' },
  'counterparty.unreachable': { do: 'notTaken' },
};
/** Either side may end a live process. */
const ENDABLE: Partial<Row> = {
  'client.terminate': { do: 'terminate' },
  'peer.termination': { do: 'terminateByPeer' },
};
/** Messages that concern a later state: kept until the process gets there. */
const LATER = (...events: TransferProcessEvent[]): Partial<Row> =>
  Object.fromEntries(events.map((e) => [e, { defer: `${e} kept until the process leaves {state}` }]));
const ALREADY = (what: string): TPCell => ({ ignore: `already ${what}` });
/**
 * The provider's completion reaches a consumer whose suspension it has not taken (the two crossed,
 * or it refused the suspension because it was completing): for the protocol the transfer was still
 * STARTED, so it completes; the suspension is dropped once the data plane settled it. Once SUSPENDED
 * (the provider took the suspension) a completion is refused, as DSP says. A provider's own
 * suspension crossing a consumer's completion is refused.
 */
const COMPLETION_CROSSES_SUSPENSION: TPCell = { do: 'completeWhileSuspending', when: 'consumer', otherwise: refuseMessage('TransferCompletionMessage') };
const TERMINATING_CELLS: Partial<Row> = {
  'peer.termination': ALREADY('terminating'),
  'peer.start': { ignore: 'terminating' },
  'peer.suspension': { ignore: 'terminating' },
  'peer.completion': { refuse: 'cannot accept TransferCompletionMessage for transfer process {pid}: it is terminating' },
};

export const TRANSFER_PROCESS_TABLE: EventTable<TransferProcessState, TransferProcessEvent, TransferProcessAction, TransferProcessGuard> = {
  // opening: the consumer prepares its data plane, the provider starts its own (or waits for approval)
  // a data flow started by a task that crashed before it completed may report before the retried
  // task has called it again (a tiny push even ends): kept until the process gets there
  INITIAL: row({ ...CALLING, ...ENDABLE, ...LATER('dataPlane.transferred') }),
  PREPARATION_REQUESTED: row({ ...CALLING, ...ENDABLE }),
  // the request is on its way; the provider's start may overtake its answer
  REQUESTING: row({ ...SENDING, ...ENDABLE, ...LATER('peer.start', 'peer.suspension', 'peer.completion') }),
  REQUESTED: row({
    ...ENDABLE,
    'client.start': { do: 'approve', when: 'provider', otherwise: refuseCommand('start') },
    'peer.start': { do: 'startByPeer', when: 'consumer', otherwise: refuseMessage('TransferStartMessage') },
    'timer.deadline': { do: 'deadlinePassed' },
  }),
  // the data plane is starting (again); the end of a tiny push or a quick suspension may overtake it
  STARTUP_REQUESTED: row({
    ...CALLING,
    ...ENDABLE,
    'peer.start': { do: 'takeStart' },
    ...LATER('peer.suspension', 'peer.completion', 'dataPlane.transferred'),
  }),
  STARTING: row({
    ...CALLING,
    ...SENDING,
    ...ENDABLE,
    'peer.start': { do: 'takeStart' },
    ...LATER('peer.suspension', 'peer.completion', 'dataPlane.transferred'),
  }),
  STARTED: row({
    ...ENDABLE,
    'client.suspend': { do: 'suspend' },
    // a pull ends when a side says so; a push when its bytes are verified, never by a command
    'client.complete': {
      do: 'complete',
      when: 'pull',
      otherwise: { refuse: 'cannot complete transfer process {pid} in state {state}: a push completes when the provider verified its bytes; terminate it to stop it' },
    },
    'peer.start': { do: 'takeStart' },
    'peer.suspension': { do: 'suspendByPeer' },
    'peer.completion': {
      do: 'completeByPeer',
      when: 'consumer',
      otherwise: {
        do: 'completeByPeer',
        when: 'pull',
        otherwise: { refuse: 'cannot accept TransferCompletionMessage for transfer process {pid}: its bytes are still moving; the provider completes a push once they are verified' },
      },
    },
    'dataPlane.transferred': { do: 'bytesArrived' },
    'watchdog.alarm': { do: 'alarm' },
  }),
  // the data plane is releasing what the suspension frees; a resume from the counterparty waits for it
  SUSPENSION_REQUESTED: row({
    ...CALLING,
    ...ENDABLE,
    'peer.suspension': ALREADY('suspending'),
    'peer.completion': COMPLETION_CROSSES_SUSPENSION,
    ...LATER('peer.start'),
    'dataPlane.transferred': { ignore: 'the transfer was suspended; a resume finishes it' },
  }),
  SUSPENDING: row({
    ...CALLING,
    ...SENDING,
    ...ENDABLE,
    'peer.suspension': ALREADY('suspending'),
    'peer.completion': COMPLETION_CROSSES_SUSPENSION,
    ...LATER('peer.start'),
    'dataPlane.transferred': { ignore: 'the transfer was suspended; a resume finishes it' },
    // the provider refused our suspension (it is ending the transfer): its word is awaited this long
    'timer.deadline': { do: 'deadlinePassed' },
  }),
  SUSPENDED: row({
    ...ENDABLE,
    'client.resume': { do: 'resume' },
    'peer.start': { do: 'startByPeer' },
    'peer.suspension': ALREADY('suspended'),
    'timer.deadline': { do: 'deadlinePassed' },
    'dataPlane.transferred': { ignore: 'the transfer was suspended; a resume finishes it' },
  }),
  RESUMING: row({
    ...CALLING,
    ...ENDABLE,
    'peer.start': { do: 'takeStart' },
    ...LATER('peer.suspension'),
  }),
  // the bytes are delivered (or a side said done): the counterparty is being told; that is never a failure
  COMPLETING: row({
    ...CALLING,
    ...SENDING,
    'client.terminate': { refuse: 'cannot terminate transfer process {pid} in state {state}: it completed and is telling the counterparty' },
    'peer.completion': ALREADY('completing'),
    // the counterparty ended it first (and released its side): both sides end TERMINATED
    'peer.termination': { do: 'terminateByPeer' },
    'peer.start': { ignore: 'already completing' },
    'dataPlane.transferred': { ignore: 'already completing' },
  }),
  COMPLETED: row({ 'peer.completion': ALREADY('completed') }),
  // the data plane is releasing; nothing but its answer matters now. A completion is refused, so its
  // sender does not end COMPLETED while this side ends TERMINATED
  TERMINATION_REQUESTED: row({ ...CALLING, ...TERMINATING_CELLS }),
  TERMINATING: row({ ...CALLING, ...SENDING, ...TERMINATING_CELLS }),
  TERMINATED: row({ 'peer.termination': ALREADY('terminated') }),
  // deprecated: never entered (provisioning belongs to the data plane)
  PROVISIONING: row({}),
  PROVISIONED: row({}),
  DEPROVISIONING: row({}),
  DEPROVISIONING_REQUESTED: row({}),
  DEPROVISIONED: row({}),
};

/** The client command of each client event (the update's name). */
export const CLIENT_VERBS = {
  'client.suspend': 'suspend',
  'client.resume': 'resume',
  'client.terminate': 'terminate',
  'client.complete': 'complete',
  'client.start': 'start',
} as const satisfies Partial<Record<TransferProcessEvent, string>>;

/** The event of each DSP message type. */
export const PEER_EVENTS = {
  TransferStartMessage: 'peer.start',
  TransferSuspensionMessage: 'peer.suspension',
  TransferCompletionMessage: 'peer.completion',
  TransferTerminationMessage: 'peer.termination',
} as const satisfies Record<string, TransferProcessEvent>;
