import type { DspState, ProcessMessage, TransferRequestMessage } from './dsp.js';

/** `messageId` is stable across retries of one message: a receiver that took it answers a repeat as done. */
export interface SendOptions {
  messageId?: string;
  /**
   * The counterparty the process is bound to (TransferProcessInput.counterpartyId), when known: its
   * credentials go with the message. Otherwise the transport derives it from the address.
   */
  counterpartyId?: string;
}

/**
 * How DSP messages reach a counterparty connector. The TransferProcess workflow only ever calls
 * the `sendToCounterparty` activity; which transport carries a message is decided by the
 * counterparty's address (in-cluster `temporal://…` now, `https://…` DSP binding later).
 */
export interface CounterpartyTransport {
  readonly name: string;
  canReach(address: string): boolean;
  /** Creates (idempotently: same consumerPid, same process) the provider's process; answers its providerPid. */
  requestTransfer(address: string, message: TransferRequestMessage, opts?: SendOptions): Promise<{ providerPid: string }>;
  /** Delivers a message about an existing process to the receiver's process `receiverPid`; a repeat of one it took is done. */
  send(address: string, receiverPid: string, message: ProcessMessage, opts?: SendOptions): Promise<void>;
  /** The counterparty's process as it stands (DSP state), for the STARTED watchdog. */
  state(address: string, pid: string): Promise<DspState>;
}

/** The counterparty answered and said no (illegal state, unknown process): retrying cannot help. */
export class CounterpartyRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CounterpartyRejected';
  }
}
