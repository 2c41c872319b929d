import type { ProcessMessage, TransferRequestMessage } from './dsp.js';

/**
 * How DSP messages reach a counterparty connector. The TransferProcess workflow only ever calls
 * the `sendToCounterparty` activity; which transport carries a message is decided by the
 * counterparty's address (in-cluster `temporal://…` now, `https://…` DSP binding later).
 */
export interface CounterpartyTransport {
  readonly name: string;
  canReach(address: string): boolean;
  /** Creates (idempotently: same consumerPid, same process) the provider's process; answers its providerPid. */
  requestTransfer(address: string, message: TransferRequestMessage): Promise<{ providerPid: string }>;
  /**
   * Delivers a message about an existing process to the receiver's process `receiverPid`.
   * `counterpartyId`, when known (a provider process is bound to one), says whose credentials go
   * with it; otherwise the transport derives it from the address.
   */
  send(address: string, receiverPid: string, message: ProcessMessage, counterpartyId?: string): Promise<void>;
}

/** The counterparty answered and said no (illegal state, unknown process): retrying cannot help. */
export class CounterpartyRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CounterpartyRejected';
  }
}
