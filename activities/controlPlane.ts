import { ApplicationFailure } from '@temporalio/activity';
import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { admitTransferRequest, type Admission } from '../src/admission.js';
import type { DataAddress } from '../src/DataAddress.js';
import {
  completeFlowUpdate,
  dataFlowStatusQuery,
  prepareUpdate,
  resumeFlowUpdate,
  startUpdate,
  suspendFlowUpdate,
  terminateFlowUpdate,
  type DataFlowInput,
  type DataFlowOp,
  type DataFlowResponse,
  type DataFlowStartMessage,
  type ReasonMessage,
} from '../src/DataFlow.js';
import type { DataFlowState } from '../src/DataFlowState.js';
import type { ControlPlaneConfig } from '../src/config.js';
import { SecretBox, SecretBoxError } from '../src/secrets.js';
import { counterpartyOwning, type ProcessMessage, type TransferRequestMessage } from '../src/dsp.js';
import { dataFlowWorkflowId, dataPlaneTaskQueue, IN_CLUSTER_SCHEME } from '../src/ids.js';
import { TransferSettingsSchema, type TransferSettings, type TransferSettingsOverrides } from '../src/settings.js';
import type { DataPlaneRef, TransferProcessInput } from '../src/TransferProcess.js';
import { CounterpartyRejected, type CounterpartyTransport } from '../src/Transport.js';

/** Side effects of the control plane: talking to its data planes and to the counterparty. */

export interface ControlPlaneDeps {
  config: ControlPlaneConfig;
  client: Client;
  transports: CounterpartyTransport[];
}

/** What `admitTransferRequest` reads of a provider's TransferProcessInput (pass the input itself). */
export type AdmitTransferRequest = Pick<TransferProcessInput, 'counterpartyAddress' | 'agreementId' | 'assetId' | 'transferType' | 'dataDestination'> & {
  counterpartyId?: string | undefined;
};

export type DataPlaneCall =
  | { op: 'prepare'; message: DataFlowStartMessage }
  | { op: 'start' | 'resume'; message: DataFlowStartMessage }
  | { op: 'suspend' | 'terminate'; message: ReasonMessage }
  | { op: 'complete' };

export function createControlPlaneActivities(deps: ControlPlaneDeps) {
  const { config, client } = deps;
  const defaults = TransferSettingsSchema.parse(config.transfer);
  const secrets = SecretBox.fromBase64(config.secretKey);

  const transportFor = (address: string): CounterpartyTransport => {
    const t = deps.transports.find((x) => x.canReach(address));
    if (!t) throw ApplicationFailure.nonRetryable(`no transport reaches counterparty address ${address}`);
    return t;
  };
  const rejectedIsFinal = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof CounterpartyRejected) throw ApplicationFailure.nonRetryable(e.message, 'CounterpartyRejected');
      // a sealed address our key cannot open will not open on a retry either
      if (e instanceof SecretBoxError) throw ApplicationFailure.nonRetryable(e.message, 'SecretBoxError');
      throw e;
    }
  };

  /** Has a worker polled this task queue lately? */
  const hasPollers = async (taskQueue: string): Promise<boolean> => {
    try {
      const res = await client.workflowService.describeTaskQueue({
        namespace: config.temporal.namespace,
        taskQueue: { name: taskQueue, kind: 1 /* TASK_QUEUE_KIND_NORMAL */ },
        taskQueueType: 1 /* TASK_QUEUE_TYPE_WORKFLOW */,
      });
      return (res.pollers?.length ?? 0) > 0;
    } catch {
      return false;
    }
  };

  return {
    /** The worker's defaults with the transfer's overrides. */
    async transferSettings(overrides?: TransferSettingsOverrides): Promise<TransferSettings> {
      return TransferSettingsSchema.parse({ ...defaults, ...overrides });
    },

    /**
     * Provider, first step of every process: may its counterparty have this transfer (src/admission.ts,
     * against this worker's agreements, assets and data planes)? Deterministic: a refusal is an
     * answer (`admitted: false`, a code and a reason meant for the counterparty), never a retry.
     * The counterparty is `counterpartyId` (set by the DSP server and the in-cluster transport);
     * for processes started without it, the in-cluster connector of `temporal://<id>`, or the
     * configured DSP counterparty owning the address.
     */
    async admitTransferRequest(req: AdmitTransferRequest): Promise<Admission> {
      const counterpartyId =
        req.counterpartyId ??
        (req.counterpartyAddress.startsWith(IN_CLUSTER_SCHEME)
          ? req.counterpartyAddress.slice(IN_CLUSTER_SCHEME.length).replace(/\/+$/, '')
          : counterpartyOwning(config.dsp?.counterparties ?? [], req.counterpartyAddress)?.id);
      if (!counterpartyId) return { admitted: false, code: 'UnknownAgreement', reason: `no agreement ${req.agreementId} with this counterparty` };
      let dataAddress: DataAddress | undefined;
      try {
        dataAddress = req.dataDestination ? secrets.open(req.dataDestination) : undefined;
      } catch (e) {
        if (e instanceof SecretBoxError) return { admitted: false, code: 'InvalidDataAddress', reason: 'dataAddress cannot be read' };
        throw e;
      }
      return admitTransferRequest(config, { counterpartyId, agreementId: req.agreementId, assetId: req.assetId, format: req.transferType, dataAddress });
    },

    /** Provider: where an asset's bytes are. */
    async resolveAsset(assetId: string): Promise<DataAddress> {
      const address = config.assets[assetId];
      if (!address) throw ApplicationFailure.nonRetryable(`unknown asset ${assetId}`, 'UnknownAsset');
      return secrets.seal(address); // an asset's credentials enter the history sealed
    },

    /**
     * Chooses the data-plane instance for a new flow: one that serves the transfer type, preferring
     * instances with a live worker, spread by flow id. The choice is recorded; later calls go there.
     */
    async selectDataPlane(req: { flowId: string; transferType: string; preferred?: string }): Promise<DataPlaneRef> {
      const candidates = config.dataPlanes.filter(
        (d) => d.transferTypes.includes(req.transferType as never) && (!req.preferred || d.id === req.preferred),
      );
      if (!candidates.length) {
        throw ApplicationFailure.nonRetryable(
          req.preferred
            ? `data plane ${req.preferred} is not configured for ${req.transferType}`
            : `no data plane serves ${req.transferType}`,
        );
      }
      const live = (await Promise.all(candidates.map(async (d) => ((await hasPollers(dataPlaneTaskQueue(d.id))) ? d : undefined)))).filter(
        (d): d is (typeof candidates)[number] => !!d,
      );
      const pool = live.length ? live : candidates;
      const chosen = pool[hash(req.flowId) % pool.length]!;
      return { id: chosen.id, taskQueue: dataPlaneTaskQueue(chosen.id) };
    },

    /**
     * One data-plane signaling call. `prepare` and `start` create the DataFlow on first use
     * (update-with-start), so a repeated call reaches the same flow and is idempotent.
     */
    async callDataPlane(req: { flow: DataFlowInput; taskQueue: string } & DataPlaneCall): Promise<DataFlowResponse> {
      const workflowId = dataFlowWorkflowIdOf(req.flow);
      try {
        if (req.op === 'prepare' || req.op === 'start') {
          return await client.workflow.executeUpdateWithStart(req.op === 'prepare' ? prepareUpdate : startUpdate, {
            args: [req.message],
            startWorkflowOperation: new WithStartWorkflowOperation('dataFlowWorkflow', {
              workflowId,
              taskQueue: req.taskQueue,
              args: [req.flow],
              workflowIdConflictPolicy: 'USE_EXISTING',
              // an ended flow is not started again: its resources were released
              workflowIdReusePolicy: 'REJECT_DUPLICATE',
            }),
          });
        }
        const handle = client.workflow.getHandle(workflowId);
        switch (req.op) {
          case 'resume':
            return await handle.executeUpdate(resumeFlowUpdate, { args: [req.message] });
          case 'suspend':
            return await handle.executeUpdate(suspendFlowUpdate, { args: [req.message] });
          case 'terminate':
            return await handle.executeUpdate(terminateFlowUpdate, { args: [req.message] });
          case 'complete':
            return await handle.executeUpdate(completeFlowUpdate, { args: [] });
        }
      } catch (e) {
        if (e instanceof WorkflowUpdateFailedError) {
          throw ApplicationFailure.nonRetryable(`data plane refused ${req.op}: ${e.cause?.message ?? e.message}`, 'DataPlaneRefused');
        }
        if (e instanceof WorkflowNotFoundError || e instanceof WorkflowExecutionAlreadyStartedError || isClosedError(e)) {
          // A flow that has ended has nothing left to terminate or complete.
          if (req.op === 'terminate' || req.op === 'complete') return { state: await finalState(workflowId), async: false };
          throw ApplicationFailure.nonRetryable(`data flow ${workflowId} has ended; cannot ${req.op}`, 'DataFlowGone');
        }
        throw e;
      }
    },

    /** What the data plane says about a flow (for stale waits). */
    async dataFlowState(req: { flow: DataFlowInput }): Promise<{ found: boolean; state?: DataFlowState }> {
      try {
        const status = await client.workflow.getHandle(dataFlowWorkflowIdOf(req.flow)).query(dataFlowStatusQuery);
        return { found: true, state: status.state };
      } catch (e) {
        if (e instanceof WorkflowNotFoundError) return { found: false };
        throw e;
      }
    },

    async requestTransfer(req: { address: string; message: TransferRequestMessage }): Promise<{ providerPid: string }> {
      return rejectedIsFinal(() => transportFor(req.address).requestTransfer(req.address, req.message));
    },

    /** `counterpartyId`: a provider process's bound counterparty (TransferProcessInput.counterpartyId), when it has one. */
    async sendToCounterparty(req: { address: string; receiverPid: string; message: ProcessMessage; counterpartyId?: string }): Promise<void> {
      return rejectedIsFinal(() => transportFor(req.address).send(req.address, req.receiverPid, req.message, req.counterpartyId));
    },
  };

  async function finalState(workflowId: string): Promise<DataFlowState> {
    try {
      const result = (await client.workflow.getHandle(workflowId).result()) as { state: DataFlowState };
      return result.state;
    } catch {
      return 'TERMINATED';
    }
  }
}

const dataFlowWorkflowIdOf = (flow: DataFlowInput): string => dataFlowWorkflowId(flow.connectorId, flow.processId);

function isClosedError(e: unknown): boolean {
  return e instanceof Error && /workflow execution already completed|already completed/i.test(e.message);
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export type ControlPlaneActivities = ReturnType<typeof createControlPlaneActivities>;
