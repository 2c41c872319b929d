import type { Cell, EventTable } from './EventTable.js';
import type { DataFlowState } from './DataFlowState.js';

/**
 * The DataFlow workflow as a table: for every state, what each event does there.
 * `workflows/DataFlowWorkflow.ts` runs it; the signaling updates' validators read the same cells.
 *
 * Events:
 *  - the signaling calls (Temporal updates, or DPS over HTTP mapped onto them): call.prepare,
 *    call.start, call.resume, call.suspend, call.terminate, call.complete;
 *  - provisioner.calledBack: an external provisioning service reports a pending (de)provision;
 *  - provision.done / provision.failed, deprovision.done / deprovision.failed: a provisioner's
 *    activity ended (done may still be pending: then its service calls back);
 *  - transfer.done / transfer.failed: the push activity ended (a stopped one fails as cancelled);
 *  - timers: timer.callback (a pending provisioner did not call back in time), timer.stop (a
 *    suspend or terminate that waits for the transfer to stop before it answers), timer.idle.
 *
 * Guards: `suspended`, `completed`, `terminated` — the outcome the flow stopped with (what a later
 * DEPROVISIONED means); `stopping` — a transfer run is being stopped.
 */
export const DATA_FLOW_EVENTS = [
  'call.prepare',
  'call.start',
  'call.resume',
  'call.suspend',
  'call.terminate',
  'call.complete',
  'provisioner.calledBack',
  'provision.done',
  'provision.failed',
  'deprovision.done',
  'deprovision.failed',
  'transfer.done',
  'transfer.failed',
  'timer.callback',
  'timer.stop',
  'timer.idle',
] as const;
export type DataFlowEvent = (typeof DATA_FLOW_EVENTS)[number];

export type DataFlowAction =
  | 'prepare'
  | 'start'
  | 'resume'
  | 'suspend'
  | 'terminate'
  | 'complete'
  | 'repeat'
  | 'alreadyDelivered'
  | 'joinStart'
  | 'resumeAfterRelease'
  | 'provisioned'
  | 'provisionFailed'
  | 'calledBack'
  | 'callbackTimedOut'
  | 'provisionedAfterEnd'
  | 'released'
  | 'releaseFailed'
  | 'bytesDone'
  | 'bytesFailed'
  | 'transferStopped'
  | 'stopDeadline'
  | 'idle';

export type DataFlowGuard = 'suspended' | 'completed' | 'terminated' | 'stopping';

type DFCell = Cell<DataFlowAction, DataFlowGuard>;
type Row = Record<DataFlowEvent, DFCell>;

const refuse = (op: string): DFCell => ({ refuse: `${op} is not allowed in DataFlow state {state}` });
const late = (what: string): DFCell => ({ ignore: `late ${what} ignored in {state}` });

const DEFAULTS: Row = {
  'call.prepare': refuse('prepare'),
  'call.start': refuse('start'),
  'call.resume': refuse('resume'),
  'call.suspend': refuse('suspend'),
  'call.terminate': refuse('terminate'),
  'call.complete': refuse('complete'),
  'provisioner.calledBack': { ignore: 'provisioner callback ignored: the flow waits for none in {state}' },
  'provision.done': late('provisioning'),
  'provision.failed': late('provisioning failure'),
  'deprovision.done': late('release'),
  'deprovision.failed': late('release failure'),
  'transfer.done': late('end of transfer'),
  'transfer.failed': late('transfer failure'),
  'timer.callback': late('callback timer'),
  'timer.stop': late('stop timer'),
  'timer.idle': late('idle timer'),
};
const row = (cells: Partial<Row>): Row => ({ ...DEFAULTS, ...cells });

/** Provisioning under way: its steps' outcomes and callbacks; a repeated call is answered "async". */
const PROVISIONING: Partial<Row> = {
  'call.prepare': { do: 'repeat' },
  'call.start': { do: 'joinStart' },
  'call.resume': { do: 'joinStart' },
  'call.terminate': { do: 'terminate' },
  'provision.done': { do: 'provisioned' },
  'provision.failed': { do: 'provisionFailed' },
  'provisioner.calledBack': { do: 'calledBack' },
  'timer.callback': { do: 'callbackTimedOut' },
};
/** The flow has stopped: a transfer still stopping reports here; provisioning cut short by a terminate lands here. */
const STOPPED: Partial<Row> = {
  'transfer.done': { do: 'transferStopped' },
  'transfer.failed': { do: 'transferStopped' },
  'timer.stop': { do: 'stopDeadline' },
  'provision.done': { do: 'provisionedAfterEnd' },
  'provision.failed': { do: 'provisionedAfterEnd' },
};
/** Releasing: the provisioners' outcomes and callbacks. */
const RELEASING: Partial<Row> = {
  'deprovision.done': { do: 'released' },
  'deprovision.failed': { do: 'releaseFailed' },
  'provisioner.calledBack': { do: 'calledBack' },
  'timer.callback': { do: 'callbackTimedOut' },
};
/**
 * A suspend (or the resume after it) that reaches a flow whose bytes were verified first: answered
 * "completed", so the process suspends and its resume completes the transfer (never a refusal that
 * would end a delivered transfer TERMINATED).
 */
const TOO_LATE_TO_STOP: Partial<Row> = { 'call.suspend': { do: 'alreadyDelivered' }, 'call.resume': { do: 'alreadyDelivered' } };
/** A suspend or resume of a flow that stopped otherwise than suspended: answered "completed" if it completed. */
const delivered = (op: 'suspend' | 'resume'): DFCell => ({ do: 'alreadyDelivered', when: 'completed', otherwise: refuse(op) });
/** Repeated calls after the flow stopped, by outcome. */
const AFTER_STOP: Partial<Row> = {
  'call.suspend': { do: 'repeat', when: 'suspended', otherwise: delivered('suspend') },
  'call.terminate': { do: 'terminate', when: 'suspended', otherwise: { do: 'repeat' } },
  'call.complete': { do: 'repeat', when: 'completed', otherwise: refuse('complete') },
};

export const DATA_FLOW_TABLE: EventTable<DataFlowState, DataFlowEvent, DataFlowAction, DataFlowGuard> = {
  RECEIVED: row({ 'call.prepare': { do: 'prepare' }, 'call.start': { do: 'start' }, 'call.terminate': { do: 'terminate' }, 'timer.idle': { do: 'idle' } }),
  PROVISIONING: row(PROVISIONING),
  PROVISION_REQUESTED: row(PROVISIONING),
  PROVISIONED: row({
    'call.prepare': { do: 'repeat' },
    'call.start': { do: 'start' },
    'call.suspend': { do: 'suspend' },
    'call.terminate': { do: 'terminate' },
    'timer.idle': { do: 'idle' },
  }),
  STARTED: row({
    'call.start': { do: 'repeat' },
    'call.resume': { do: 'repeat' },
    'call.suspend': { do: 'suspend' },
    'call.terminate': { do: 'terminate' },
    'call.complete': { do: 'complete' },
    'transfer.done': { do: 'bytesDone' },
    // a run stopped by an earlier suspension reports while its successor waits to begin
    'transfer.failed': { do: 'transferStopped', when: 'stopping', otherwise: { do: 'bytesFailed' } },
  }),
  // the bytes are verified; the release begins at once
  COMPLETED: row({ ...STOPPED, ...TOO_LATE_TO_STOP, 'call.complete': { do: 'repeat' }, 'call.terminate': { do: 'repeat' } }),
  SUSPENDED: row({
    ...STOPPED,
    'call.suspend': { do: 'repeat' },
    // the provider's completion crossed the consumer's suspension: the transfer completed after all
    'call.complete': { do: 'complete' },
    'call.resume': { do: 'resume' },
    'call.terminate': { do: 'terminate' },
    'timer.idle': { do: 'idle' },
  }),
  TERMINATED: row({ ...STOPPED, 'call.terminate': { do: 'repeat' }, 'provisioner.calledBack': { ignore: 'terminated: provisioning callbacks no longer matter' } }),
  // provisioning or the transfer failed: a repeated prepare/start/resume tries again, a terminate releases
  FAILED: row({
    'call.prepare': { do: 'prepare' },
    'call.start': { do: 'start' },
    'call.resume': { do: 'resume' },
    'call.terminate': { do: 'terminate' },
    'timer.idle': { do: 'idle' },
  }),
  DEPROVISIONING: row({
    ...STOPPED,
    ...RELEASING,
    ...AFTER_STOP,
    // a resume while the suspension's release settles: it starts once the release is done
    'call.resume': { do: 'resumeAfterRelease', when: 'suspended', otherwise: delivered('resume') },
  }),
  DEPROVISION_REQUESTED: row({
    ...STOPPED,
    ...RELEASING,
    ...AFTER_STOP,
    'call.resume': { do: 'resumeAfterRelease', when: 'suspended', otherwise: delivered('resume') },
  }),
  DEPROVISIONED: row({
    ...AFTER_STOP,
    // as in SUSPENDED: what the suspension released is released once more as completed (delivered data kept)
    'call.complete': { do: 'repeat', when: 'completed', otherwise: { do: 'complete', when: 'suspended', otherwise: refuse('complete') } },
    'call.resume': { do: 'resume', when: 'suspended', otherwise: delivered('resume') },
    'timer.idle': { do: 'idle' },
  }),
  // a release failed: a repeated terminate tries it again
  DEPROVISION_FAILED: row({
    'call.suspend': { do: 'repeat', when: 'suspended', otherwise: refuse('suspend') },
    'call.terminate': { do: 'terminate' },
    'call.complete': { do: 'repeat', when: 'completed', otherwise: refuse('complete') },
    'timer.idle': { do: 'idle' },
  }),
  NOTIFIED: row({}),
};

/** The update event of each signaling call. */
export const CALL_EVENTS = {
  prepare: 'call.prepare',
  start: 'call.start',
  resume: 'call.resume',
  suspend: 'call.suspend',
  terminate: 'call.terminate',
  complete: 'call.complete',
} as const satisfies Record<string, DataFlowEvent>;
