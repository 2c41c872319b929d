import type { z } from 'zod';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey } from '@temporalio/common';
import type { DataAddress } from './DataAddress.js';
import type { ProcessMessage, TransferRequestMessage } from './dsp.js';
import type { DataPlaneCallbackSchema, ReasonSchema, TransferProcessInputSchema } from './schemas/TransferProcess.js';
import type { Role } from './Provisioner.js';
import type { TransferProcessState } from './TransferProcessState.js';

/**
 * The contract of the TransferProcess workflow: its input, status query, updates, signals and search
 * attributes. No zod (the workflow imports it): the schemas are in src/schemas/TransferProcess.ts.
 */

/** Transfer types: `<endpointType>-<PUSH|PULL>` as in DSP `format`. */
export const TRANSFER_TYPES = ['File-PUSH', 'HttpData-PUSH', 'HttpData-PULL'] as const;
export type TransferType = (typeof TRANSFER_TYPES)[number];
/** A pull: the provider's data plane issues an EDR and the consumer fetches with it; nothing is pushed. */
export const isPull = (type: string): boolean => type.endsWith('-PULL');

export type TransferProcessInput = z.infer<typeof TransferProcessInputSchema>;

export interface StateChange {
  state: TransferProcessState;
  at: string;
  note?: string;
}

export interface DataPlaneRef {
  id: string;
  taskQueue: string;
}

export interface TransferProcessStatus {
  processId: string;
  role: Role;
  state: TransferProcessState;
  stateCode: number;
  connectorId: string;
  counterpartyPid?: string;
  counterpartyAddress: string;
  counterpartyId?: string;
  transferType: string;
  agreementId: string;
  assetId: string;
  dataFlowId: string;
  dataPlane?: DataPlaneRef;
  /** Addresses as queries show them: secrets masked. */
  dataDestination?: DataAddress;
  /** A pull's endpoint data reference (issued by the provider, received by the consumer), secrets masked. */
  edr?: DataAddress;
  /** Why the process is where it is now (set for every final state). */
  reason?: string;
  error?: string;
  /** What the process waits for now, in words (the Web UI shows it as the workflow's current details). */
  waitingFor?: string;
  /**
   * Bugs the process ran into and survived (an illegal transition refused instead of failing the
   * workflow task): none, ever, in a correct build; each is also logged as an error.
   */
  defects?: string[];
  history: StateChange[];
}

/** What the data plane reports back on a `*_REQUESTED` wait or when the transfer ends. */
export type DataPlaneCallback = z.infer<typeof DataPlaneCallbackSchema>;

export type ReasonArgs = z.infer<typeof ReasonSchema>;

export const transferProcessStatusQuery = defineQuery<TransferProcessStatus>('status');
/** Client commands: validators reject illegal ones at once, before anything is recorded. */
export const suspendUpdate = defineUpdate<TransferProcessState, [ReasonArgs]>('suspend');
export const resumeUpdate = defineUpdate<TransferProcessState, []>('resume');
export const terminateUpdate = defineUpdate<TransferProcessState, [ReasonArgs]>('terminate');
/** Provider held in REQUESTED (startPolicy `manual`): go ahead. */
export const startUpdate = defineUpdate<TransferProcessState, []>('start');
/** Either side ends a started transfer as done (a pull has no end of its own). */
export const completeUpdate = defineUpdate<TransferProcessState, []>('complete');
/** Consumer of a pull: the EDR the provider sent, secrets sealed (null before the start). */
export const edrQuery = defineQuery<DataAddress | null>('edr');
/** A DSP message from the counterparty, delivered by a transport. */
export const counterpartyMessageUpdate = defineUpdate<TransferProcessState, [ProcessMessage]>('counterpartyMessage');
export const dataPlaneCallbackSignal = defineSignal<[DataPlaneCallback]>('dataPlaneCallback');

/** A provider's answer to a TransferRequestMessage (in-cluster: an update-with-start on its process). */
export interface RequestAnswer {
  providerPid: string;
  state: TransferProcessState;
}
/** In-cluster: the consumer's request reaches the provider's process, which admits it (or refuses) itself. */
export const requestUpdate = defineUpdate<RequestAnswer, [TransferRequestMessage]>('request');

/** What the STARTED watchdog saw that the process must act on. */
export type WatchAlarm =
  | { kind: 'flowEnded'; state: string; completed: boolean; detail?: string }
  | { kind: 'flowGone' }
  | { kind: 'dataPlaneLost'; detail: string }
  | { kind: 'peerEnded'; state: 'COMPLETED' | 'TERMINATED' }
  | { kind: 'peerLost'; detail: string };

export const TransferStateAttr = defineSearchAttributeKey('FerryTransferState', 'KEYWORD');
export const TransferRoleAttr = defineSearchAttributeKey('FerryTransferRole', 'KEYWORD');
export const TransferTypeAttr = defineSearchAttributeKey('FerryTransferType', 'KEYWORD');
export const CounterpartyAttr = defineSearchAttributeKey('FerryCounterparty', 'KEYWORD');
export const DataPlaneAttr = defineSearchAttributeKey('FerryDataPlane', 'KEYWORD');
export const AgreementAttr = defineSearchAttributeKey('FerryAgreement', 'KEYWORD');
export const AssetAttr = defineSearchAttributeKey('FerryAsset', 'KEYWORD');

export interface TransferProcessResult {
  state: TransferProcessState;
  reason: string;
}

/**
 * How a TransferProcess workflow closes: COMPLETED and a termination someone asked for (the
 * operator, the counterparty) complete it with a result; a termination because something failed
 * (a data plane or counterparty failure, a stale wait given up, a deadline) fails it with this type,
 * so Temporal's own failure views list it. FerryClient.result reads both as a result.
 */
export const TRANSFER_FAILED = 'TransferFailed';

/** The search attributes a TransferProcess starts with (so it need not upsert them itself). */
export function transferSearchAttributes(input: Pick<TransferProcessInput, 'role' | 'transferType' | 'counterpartyAddress' | 'agreementId' | 'assetId'>) {
  return [
    { key: TransferStateAttr, value: 'INITIAL' },
    { key: TransferRoleAttr, value: input.role },
    { key: TransferTypeAttr, value: input.transferType },
    { key: CounterpartyAttr, value: input.counterpartyAddress },
    { key: AgreementAttr, value: input.agreementId },
    { key: AssetAttr, value: input.assetId },
  ];
}

/**
 * The memo that links the four workflows of a transfer: this process's data flow, and the
 * counterparty's process (and data flow, when it runs on the same cluster).
 */
export function transferLinks(input: Pick<TransferProcessInput, 'connectorId' | 'processId' | 'counterpartyAddress' | 'counterpartyPid'>): Record<string, string> {
  const peer = input.counterpartyAddress.startsWith('temporal://') ? input.counterpartyAddress.slice('temporal://'.length) : undefined;
  return {
    dataFlowWorkflowId: `dataflow-${input.connectorId}-${input.processId}`,
    ...(input.counterpartyPid
      ? peer
        ? { counterpartyWorkflowId: `transfer-${peer}-${input.counterpartyPid}`, counterpartyDataFlowWorkflowId: `dataflow-${peer}-${input.counterpartyPid}` }
        : { counterpartyProcess: `${input.counterpartyAddress} ${input.counterpartyPid}` }
      : {}),
  };
}

/** The one-line summary and the details a TransferProcess carries from its start (the Web UI shows them). */
export function transferSummary(input: Pick<TransferProcessInput, 'role' | 'connectorId' | 'counterpartyAddress' | 'transferType' | 'assetId' | 'agreementId' | 'processId' | 'counterpartyPid'>): { staticSummary: string; staticDetails: string } {
  const arrow = input.role === 'CONSUMER' ? '←' : '→';
  return {
    staticSummary: `${input.role.toLowerCase()} ${input.connectorId} ${arrow} ${input.counterpartyAddress}: ${input.transferType} of ${input.assetId}`,
    staticDetails: [
      `**role** ${input.role}`,
      `**connector** ${input.connectorId} ${arrow} **counterparty** ${input.counterpartyAddress}`,
      `**transfer type** ${input.transferType}`,
      `**asset** ${input.assetId}`,
      `**agreement** ${input.agreementId}`,
      `**process** ${input.processId}${input.counterpartyPid ? ` (counterparty's ${input.counterpartyPid})` : ''}`,
      `**data flow** dataflow-${input.connectorId}-${input.processId}`,
    ].join('  \n'),
  };
}
