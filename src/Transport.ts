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
/** The counterparty is busy (429/503) and said when to come back: the retry waits that long. */
export class CounterpartyBusy extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
    this.name = 'CounterpartyBusy';
  }
}

/** Retry-After (seconds or an HTTP date) in milliseconds, bounded to [1 s, 60 s]; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = /^\d{1,9}$/.test(header.trim()) ? Number(header.trim()) * 1000 : Date.parse(header) - now;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(60_000, Math.max(1000, seconds));
}

export class CounterpartyRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CounterpartyRejected';
  }
}
