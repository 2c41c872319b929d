import type { z } from 'zod';
import { endpointUrl, QUERY_PROPERTY_PREFIX, type DataAddress } from './DataAddress.js';
import type {
  ProcessMessageSchema,
  TransferCompletionMessageSchema,
  TransferRequestMessageSchema,
  TransferStartMessageSchema,
  TransferSuspensionMessageSchema,
  TransferTerminationMessageSchema,
} from './schemas/dsp.js';

/**
 * Dataspace Protocol (2025-1) transfer messages between connectors. Every transport (in-cluster
 * today, HTTPS later) carries exactly these; the TransferProcess workflow never sees a transport.
 * No zod here (workflows import this module): the message schemas are in src/schemas/dsp.ts.
 */
export const DSP_CONTEXT = 'https://w3id.org/dspace/2025/1/context.jsonld';

export type TransferRequestMessage = z.infer<typeof TransferRequestMessageSchema>;
export type TransferStartMessage = z.infer<typeof TransferStartMessageSchema>;
export type TransferSuspensionMessage = z.infer<typeof TransferSuspensionMessageSchema>;
export type TransferCompletionMessage = z.infer<typeof TransferCompletionMessageSchema>;
export type TransferTerminationMessage = z.infer<typeof TransferTerminationMessageSchema>;
export type ProcessMessage = z.infer<typeof ProcessMessageSchema>;
export type ProcessMessageType = ProcessMessage['@type'];

/** The ACK a connector answers with: the process as it stands (DSP state names). */
export const DSP_STATES = ['REQUESTED', 'STARTED', 'SUSPENDED', 'COMPLETED', 'TERMINATED'] as const;
export type DspState = (typeof DSP_STATES)[number];

/** The DSP state of a process: the last protocol-visible state it reached. */
export function dspStateOf(status: { history: { state: string }[] }): DspState {
  const visible: readonly string[] = DSP_STATES;
  const last = [...status.history].reverse().find((h) => visible.includes(h.state));
  return (last?.state as DspState | undefined) ?? 'REQUESTED';
}

/** The final DSP state a message leads to, when it ends the process (a repeat of it to an ended process is done, not refused). */
export const FINAL_STATE_OF: Partial<Record<ProcessMessageType, DspState>> = {
  TransferCompletionMessage: 'COMPLETED',
  TransferTerminationMessage: 'TERMINATED',
};

/** The header carrying a message's stable id between ferry connectors over HTTP. */
export const MESSAGE_ID_HEADER = 'x-ferry-message-id';

export interface DspTransferProcess {
  '@context': string[];
  '@type': 'TransferProcess';
  providerPid: string;
  consumerPid: string;
  state: DspState;
}

export interface DspTransferError {
  '@context': string[];
  '@type': 'TransferError';
  consumerPid?: string;
  providerPid?: string;
  code: string;
  reason: string[];
}

/** Which message each `POST /transfers/:pid/<path>` carries. */
export const MESSAGE_PATHS = {
  start: 'TransferStartMessage',
  completion: 'TransferCompletionMessage',
  termination: 'TransferTerminationMessage',
  suspension: 'TransferSuspensionMessage',
} as const satisfies Record<string, ProcessMessageType>;
export type MessagePath = keyof typeof MESSAGE_PATHS;
export const pathOfMessage = (type: ProcessMessageType): MessagePath =>
  (Object.keys(MESSAGE_PATHS) as MessagePath[]).find((p) => MESSAGE_PATHS[p] === type)!;

/**
 * A DataAddress as it goes on the wire: typed JSON-LD nodes (`DataAddress`, `EndpointProperty`), and
 * no empty `endpointProperties` (the 2025-1 schema wants at least one when present). Inbound, zod
 * drops the `@type`s again.
 */
export function toDspDataAddress(address: DataAddress) {
  // the counterparty gets the URL whole: `query:` properties are ferry's way of storing it
  const properties = address.endpointProperties.filter((p) => !p.name.startsWith(QUERY_PROPERTY_PREFIX));
  return {
    '@type': 'DataAddress' as const,
    endpointType: address.endpointType,
    endpoint: endpointUrl(address),
    ...(properties.length ? { endpointProperties: properties.map((p) => ({ '@type': 'EndpointProperty' as const, name: p.name, value: p.value })) } : {}),
  };
}

/** A DSP address without trailing slashes: `https://x/dsp/` and `https://x/dsp` are one connector. */
export const trimSlash = (address: string): string => address.replace(/\/+$/, '');
