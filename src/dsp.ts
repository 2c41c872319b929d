import { z } from 'zod';
import { DataAddressSchema, endpointUrl, QUERY_PROPERTY_PREFIX, type DataAddress } from './DataAddress.js';

/**
 * Dataspace Protocol (2025-1) transfer messages between connectors. Every transport (in-cluster
 * today, HTTPS later) carries exactly these; the TransferProcess workflow never sees a transport.
 */
export const DSP_CONTEXT = 'https://w3id.org/dspace/2025/1/context.jsonld';

const base = { '@context': z.array(z.string()).default([DSP_CONTEXT]) };
const Pid = z.string().min(1).max(200);

export const TransferRequestMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferRequestMessage'),
  consumerPid: Pid,
  agreementId: z.string().min(1),
  /** ferry's in-cluster extension: which asset of the agreement. Over HTTPS the agreement names it. */
  assetId: z.string().min(1).optional(),
  format: z.string().min(1),
  dataAddress: DataAddressSchema.optional(),
  callbackAddress: z.string().min(1),
});
export const TransferStartMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferStartMessage'),
  consumerPid: Pid,
  providerPid: Pid,
  dataAddress: DataAddressSchema.optional(),
});
export const TransferSuspensionMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferSuspensionMessage'),
  consumerPid: Pid,
  providerPid: Pid,
  code: z.string().optional(),
  reason: z.array(z.string()).default([]),
});
export const TransferCompletionMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferCompletionMessage'),
  consumerPid: Pid,
  providerPid: Pid,
});
export const TransferTerminationMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferTerminationMessage'),
  consumerPid: Pid,
  providerPid: Pid,
  code: z.string().optional(),
  reason: z.array(z.string()).default([]),
});

/** Messages about an existing process (everything but the request that creates it). */
export const ProcessMessageSchema = z.discriminatedUnion('@type', [
  TransferStartMessageSchema,
  TransferSuspensionMessageSchema,
  TransferCompletionMessageSchema,
  TransferTerminationMessageSchema,
]);

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

/** Is `address` the connector base `base` or a path below it (whole segments: `…:8080` is not under `…:80`)? */
export const isUnder = (address: string, base: string): boolean => {
  const [a, b] = [trimSlash(address), trimSlash(base)];
  return a === b || a.startsWith(`${b}/`);
};
