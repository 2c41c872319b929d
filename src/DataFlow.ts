import type { z } from 'zod';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey } from '@temporalio/common';
import type { DataAddress } from './DataAddress.js';
import type {
  DataFlowInputSchema,
  DataFlowPrepareMessageSchema,
  DataFlowStartMessageSchema,
  ProvisionerCallbackSchema,
  ReasonMessageSchema,
} from './schemas/DataFlow.js';
import type { DeprovisionReason, ProvisionerMatch, ProvisionSide, Role } from './Provisioner.js';
import type { DataFlowSettings } from './settings.js';
import type { DataFlowState } from './DataFlowState.js';

/**
 * The contract of the DataFlow workflow: the data-plane signaling interface and its status. No zod
 * (the workflow imports it): the schemas are in src/schemas/DataFlow.ts.
 */

export type CallbackTarget = NonNullable<DataFlowInput['callback']>;
export type DataFlowInput = z.infer<typeof DataFlowInputSchema>;

export type DataFlowPrepareMessage = z.infer<typeof DataFlowPrepareMessageSchema>;

/** `start` (and `resume`): the provider's data plane moves the bytes; the consumer's only records it. */
export type DataFlowStartMessage = z.infer<typeof DataFlowStartMessageSchema>;

/** What every signaling call answers at once: did it trigger async (de)provisioning? */
export interface DataFlowResponse {
  state: DataFlowState;
  /** True: wait for the callback. False: go on now. */
  async: boolean;
  /** The (possibly rewritten) address the counterparty needs: the consumer's destination after `prepare`, a provider's EDR after `start` of a pull. */
  dataAddress?: DataAddress;
  /** The flow's bytes were delivered and verified (a suspend or resume that came after that is answered so). */
  completed?: true;
}

export interface ProvisionedResource {
  provisioner: string;
  side: ProvisionSide;
  resource: Record<string, string>;
  /** Provisioning finished (a pending provisioner called back ok); a failed one is provisioned again on retry. */
  ready: boolean;
  /**
   * Released: `true` for good; `suspended` when a suspension released it as far as a suspension does
   * (delivered data kept), so a later terminate releases it again.
   */
  released: boolean | 'suspended';
}

export type DataFlowOutcome = 'completed' | 'suspended' | 'terminated' | 'failed';

/** What a data-plane worker tells a new DataFlow once: its settings and its provisioners, in order. */
export interface DataFlowSetup {
  settings: DataFlowSettings;
  provisioners: ProvisionerMatch[];
}

export interface DataFlowStatus {
  flowId: string;
  processId: string;
  role: Role;
  instanceId: string;
  state: DataFlowState;
  source?: DataAddress;
  destination?: DataAddress;
  resources: ProvisionedResource[];
  bytesTransferred?: number;
  sha256?: string;
  /** Why the flow stopped moving bytes: what DEPROVISIONED means for it. */
  outcome?: DataFlowOutcome;
  reason?: string;
  error?: string;
  /** Bugs the flow ran into and survived (see TransferProcessStatus.defects). */
  defects?: string[];
  history: { state: DataFlowState; at: string; note?: string }[];
}

/** An external provisioning service finished what it answered "pending" to. */
export type ProvisionerCallback = z.infer<typeof ProvisionerCallbackSchema>;

export type ReasonMessage = z.infer<typeof ReasonMessageSchema>;

export const prepareUpdate = defineUpdate<DataFlowResponse, [DataFlowPrepareMessage]>('prepare');
export const startUpdate = defineUpdate<DataFlowResponse, [DataFlowStartMessage]>('start');
export const resumeFlowUpdate = defineUpdate<DataFlowResponse, [DataFlowStartMessage]>('resume');
export const suspendFlowUpdate = defineUpdate<DataFlowResponse, [ReasonMessage]>('suspend');
export const terminateFlowUpdate = defineUpdate<DataFlowResponse, [ReasonMessage]>('terminate');
/** The consumer's control plane heard the provider complete: release what was provisioned. */
export const completeFlowUpdate = defineUpdate<DataFlowResponse, []>('complete');
export const provisionerCallbackSignal = defineSignal<[ProvisionerCallback]>('provisionerCallback');
export const dataFlowStatusQuery = defineQuery<DataFlowStatus>('status');

/** What the public endpoint needs to serve a pull: is the flow started, which tokens are live, and the source. */
export interface PullAccess {
  state: DataFlowState;
  /** Ids of the issued tokens not revoked yet (their provision is held). */
  liveTokenIds: string[];
  source?: DataAddress;
}
export const pullAccessQuery = defineQuery<PullAccess>('pullAccess');
/** The provisioner that issues pulls' EDRs: its held resources are the live tokens. */
export const EDR_PROVISIONER = 'edr';

export const DataFlowStateAttr = defineSearchAttributeKey('FerryDataFlowState', 'KEYWORD');

/** The one-line summary and the details a DataFlow carries from its start (the Web UI shows them). */
export function dataFlowSummary(input: DataFlowInput, transferType?: string): { staticSummary: string; staticDetails: string } {
  return {
    staticSummary: `data flow of ${input.role.toLowerCase()} ${input.connectorId} transfer ${input.processId}${transferType ? ` (${transferType})` : ''} on ${input.instanceId}`,
    staticDetails: [
      `**role** ${input.role}`,
      `**data plane** ${input.instanceId}`,
      `**transfer process** ${input.callbackWorkflowId}`,
      ...(transferType ? [`**transfer type** ${transferType}`] : []),
    ].join('  \n'),
  };
}

export type DataFlowOp = 'prepare' | 'start' | 'resume' | 'suspend' | 'terminate' | 'complete';

export interface DataFlowResult {
  state: DataFlowState;
  reason: string;
  /** What the flow's end means (absent from flows that ended before it was recorded). */
  outcome?: DataFlowOutcome;
}

export const deprovisionReasonFor = (state: DataFlowState): DeprovisionReason =>
  state === 'COMPLETED' ? 'completed' : state === 'SUSPENDED' ? 'suspended' : state === 'FAILED' ? 'failed' : 'terminated';
