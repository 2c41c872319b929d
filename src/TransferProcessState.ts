import type { TransitionTable } from './StateMachine.js';

/**
 * States of a TransferProcess (control plane), with Eclipse EDC's codes where EDC has them.
 *
 * SUSPENSION_REQUESTED (660) and TERMINATION_REQUESTED (830) are this engine's own: the
 * process waits there for the data plane's deprovisioning callback. Their codes sit between
 * the state that requests them and the state they lead to, like EDC's other `*_REQUESTED` codes.
 */
export const TransferProcessStates = {
  INITIAL: 100,
  /** @deprecated provisioning moved to the data plane; no code path enters this state. */
  PROVISIONING: 200,
  PREPARATION_REQUESTED: 250,
  /** @deprecated provisioning moved to the data plane; no code path enters this state. */
  PROVISIONED: 300,
  REQUESTING: 400,
  REQUESTED: 500,
  STARTING: 550,
  STARTUP_REQUESTED: 570,
  STARTED: 600,
  SUSPENDING: 650,
  SUSPENSION_REQUESTED: 660,
  SUSPENDED: 700,
  RESUMING: 720,
  COMPLETING: 750,
  COMPLETED: 800,
  TERMINATING: 825,
  TERMINATION_REQUESTED: 830,
  TERMINATED: 850,
  /** @deprecated deprovisioning moved to the data plane; no code path enters this state. */
  DEPROVISIONING: 900,
  /** @deprecated deprovisioning moved to the data plane; no code path enters this state. */
  DEPROVISIONING_REQUESTED: 950,
  /** @deprecated deprovisioning moved to the data plane; no code path enters this state. */
  DEPROVISIONED: 1000,
} as const;

export type TransferProcessState = keyof typeof TransferProcessStates;

export const DEPRECATED_TRANSFER_PROCESS_STATES: readonly TransferProcessState[] = [
  'PROVISIONING',
  'PROVISIONED',
  'DEPROVISIONING',
  'DEPROVISIONING_REQUESTED',
  'DEPROVISIONED',
];

/** Any live state may be terminated: through the data plane (TERMINATION_REQUESTED) or directly (TERMINATING). */
const TERMINABLE = ['TERMINATION_REQUESTED', 'TERMINATING'] as const;

/**
 * What may follow what. Read a row as "from this state the process may go to".
 * The seed's flow table is the first rows: each signaling call leads either to a `*_REQUESTED`
 * wait (the data plane started async (de)provisioning) or straight on (it did not).
 */
export const TRANSFER_PROCESS_TRANSITIONS: TransitionTable<TransferProcessState> = {
  //                      prepare (consumer) / start (provider) / hold for a start command (provider, manual)
  INITIAL: ['PREPARATION_REQUESTED', 'REQUESTING', 'STARTUP_REQUESTED', 'STARTING', 'REQUESTED', ...TERMINABLE],
  PREPARATION_REQUESTED: ['REQUESTING', ...TERMINABLE],
  REQUESTING: ['REQUESTED', ...TERMINABLE],
  // the consumer starts its own data plane when the provider's start arrives; a held provider on its start command
  REQUESTED: ['STARTUP_REQUESTED', 'STARTING', ...TERMINABLE],
  STARTUP_REQUESTED: ['STARTING', ...TERMINABLE],
  // STARTING, SUSPENDING and TERMINATING are under way: the data plane is called (and may answer
  // "async", a `*_REQUESTED` wait), then the counterparty is told
  STARTING: ['STARTUP_REQUESTED', 'STARTED', ...TERMINABLE],
  //                      suspend / terminate / completion
  STARTED: ['SUSPENSION_REQUESTED', 'SUSPENDING', 'COMPLETING', ...TERMINABLE],
  SUSPENSION_REQUESTED: ['SUSPENDING', ...TERMINABLE],
  // COMPLETING: the provider's completion crossed our suspension (TransferProcessTable: COMPLETION_CROSSES_SUSPENSION)
  SUSPENDING: ['SUSPENSION_REQUESTED', 'SUSPENDED', 'COMPLETING', ...TERMINABLE],
  // resumed here (RESUMING) or by the counterparty's start (straight to the data plane)
  SUSPENDED: ['RESUMING', 'STARTUP_REQUESTED', 'STARTING', ...TERMINABLE],
  RESUMING: ['STARTUP_REQUESTED', 'STARTING', ...TERMINABLE],
  COMPLETING: ['COMPLETED', ...TERMINABLE],
  TERMINATION_REQUESTED: ['TERMINATING'],
  TERMINATING: ['TERMINATION_REQUESTED', 'TERMINATED'],
  COMPLETED: [],
  TERMINATED: [],
  PROVISIONING: [],
  PROVISIONED: [],
  DEPROVISIONING: [],
  DEPROVISIONING_REQUESTED: [],
  DEPROVISIONED: [],
};

export const FINAL_TRANSFER_PROCESS_STATES: readonly TransferProcessState[] = ['COMPLETED', 'TERMINATED'];

export const isFinalTransferProcessState = (s: TransferProcessState): boolean =>
  FINAL_TRANSFER_PROCESS_STATES.includes(s);
