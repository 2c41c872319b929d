import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { DataAddress } from '../src/DataAddress.js';
import { dataFlowStatusQuery, type DataFlowInput, type DataFlowOutcome, type DataFlowResponse, type DataFlowStartMessage, type ReasonMessage } from '../src/DataFlow.js';
import type { DataFlowState } from '../src/DataFlowState.js';
import type { ControlPlaneConfig } from '../src/config.js';
import { isUnder, type ProcessMessage, type TransferRequestMessage } from '../src/dsp.js';
import { dataPlaneTaskQueue } from '../src/ids.js';
import { TransferSettingsSchema, type TransferSettings, type TransferSettingsOverrides } from '../src/settings.js';
import { transferProcessStatusQuery, type DataPlaneRef, type WatchAlarm } from '../src/TransferProcess.js';
import { callDataFlow, dataFlowWorkflowIdOf, DataFlowGone, DataFlowRefused } from './dataFlowCalls.js';
import { callDpsDataPlane, dpsDataFlowState, type DataPlaneDirectory, type DpsDataPlaneClientDeps, type TransferContext } from './dps/dataPlaneClient.js';
import { CounterpartyRejected, type CounterpartyTransport } from '../src/Transport.js';

/** Side effects of the control plane: talking to its data planes and to the counterparty. */

export interface ControlPlaneDeps {
  config: ControlPlaneConfig;
  client: Client;
  transports: CounterpartyTransport[];
  /** Data planes reached over DPS HTTP (configured with `dps`, or registered). */
  dps?: DpsDataPlaneClientDeps & { planes: DataPlaneDirectory };
}

export type DataPlaneCall =
  | { op: 'prepare'; message: DataFlowStartMessage }
  | { op: 'start' | 'resume'; message: DataFlowStartMessage }
  | { op: 'suspend' | 'terminate'; message: ReasonMessage }
  | { op: 'complete' };

/** What a new TransferProcess learns in one local activity: its settings, and what it may run on. */
export interface OpenedTransfer {
  settings: TransferSettings;
  /** Provider: the asset's address (credentials sealed). */
  source?: DataAddress;
  dataPlane?: DataPlaneRef;
  /** Why this transfer cannot be opened (unknown asset, no data plane serves it…); it then ends with this reason. */
  refusal?: string;
}

export function createControlPlaneActivities(deps: ControlPlaneDeps) {
  const { config, client } = deps;
  const defaults = TransferSettingsSchema.parse(config.transfer);

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

  /**
   * Chooses the data-plane instance for a new flow: one that serves the transfer type, preferring
   * instances with a live worker, spread by flow id. The choice is recorded; later calls go there.
   */
  const chooseDataPlane = async (req: { flowId: string; transferType: string; preferred?: string }): Promise<DataPlaneRef> => {
    const planes = deps.dps?.planes.all() ?? config.dataPlanes.map((d) => ({ ...d, dps: !!d.dps }));
    const candidates = planes.filter((d) => d.transferTypes.includes(req.transferType as never) && (!req.preferred || d.id === req.preferred));
    if (!candidates.length) {
      throw ApplicationFailure.nonRetryable(
        req.preferred ? `data plane ${req.preferred} is not configured for ${req.transferType}` : `no data plane serves ${req.transferType}`,
      );
    }
    // a DPS data plane has no task queue to look at: it counts as live
    const live = (await Promise.all(candidates.map(async (d) => (d.dps || (await hasPollers(dataPlaneTaskQueue(d.id))) ? d : undefined)))).filter(
      (d): d is (typeof candidates)[number] => !!d,
    );
    const pool = live.length ? live : candidates;
    const chosen = pool[hash(req.flowId) % pool.length]!;
    return { id: chosen.id, taskQueue: dataPlaneTaskQueue(chosen.id) };
  };

  /**
   * The flow's state as its data plane says: its DataFlow's query (within a deadline: a data plane
   * without workers does not answer), or a DPS data plane's `GET …/status` (WorkflowNotFoundError
   * when it knows no such flow).
   */
  const flowStatus = async (flow: DataFlowInput): Promise<{ state: DataFlowState; outcome?: DataFlowOutcome; error?: string }> => {
    const plane = deps.dps?.planes.dps(flow.instanceId);
    if (plane) {
      const seen = await dpsDataFlowState(deps.dps!, plane, flow.processId);
      if (!seen.found) throw new WorkflowNotFoundError(`data plane ${plane.id} knows no flow ${flow.processId}`, dataFlowWorkflowIdOf(flow), undefined);
      const outcome: Partial<Record<DataFlowState, DataFlowOutcome>> = { COMPLETED: 'completed', TERMINATED: 'terminated', SUSPENDED: 'suspended' };
      return { state: seen.state!, ...(outcome[seen.state!] ? { outcome: outcome[seen.state!] } : {}) };
    }
    return client.withDeadline(Date.now() + 10_000, () => client.workflow.getHandle(dataFlowWorkflowIdOf(flow)).query(dataFlowStatusQuery));
  };

  /**
   * What a DPS message says of the transfer that the DataFlow contract does not carry: read from the
   * TransferProcess that makes the call (it answers queries while it waits for this activity).
   */
  const transferContext = async (flow: DataFlowInput): Promise<TransferContext> => {
    const status = await client.workflow.getHandle(flow.callbackWorkflowId).query(transferProcessStatusQuery);
    const counterparty = status.counterpartyId ?? config.dsp?.counterparties.find((c) => isUnder(status.counterpartyAddress, c.address))?.id;
    return {
      transferType: status.transferType,
      agreementId: status.agreementId,
      datasetId: status.assetId,
      participantId: config.connectorId,
      counterPartyId: counterparty ?? status.counterpartyAddress,
    };
  };

  return {
    /**
     * Everything a new TransferProcess needs before its first step, in one local activity: its
     * settings (defaults and overrides), the provider's asset, and the data-plane instance.
     * What cannot be opened comes back as a refusal (the process then ends with that reason).
     */
    async openTransfer(req: {
      role: 'CONSUMER' | 'PROVIDER';
      processId: string;
      transferType: string;
      agreementId: string;
      assetId: string;
      counterpartyId?: string;
      dataDestination?: DataAddress;
      preferredDataPlane?: string;
      settings?: TransferSettingsOverrides;
    }): Promise<OpenedTransfer> {
      const parsed = TransferSettingsSchema.safeParse({ ...defaults, ...req.settings });
      if (!parsed.success) throw ApplicationFailure.nonRetryable(`invalid transfer settings: ${parsed.error.message}`, 'InvalidSettings');
      const settings = parsed.data;
      let source: DataAddress | undefined;
      if (req.role === 'PROVIDER') {
        const address = config.assets[req.assetId];
        if (!address) return { settings, refusal: `unknown asset ${req.assetId}` };
        source = address; // the payload codec encrypts it in every history
      }
      try {
        const dataPlane = await chooseDataPlane({ flowId: req.processId, transferType: req.transferType, ...(req.preferredDataPlane ? { preferred: req.preferredDataPlane } : {}) });
        return { settings, ...(source ? { source } : {}), dataPlane };
      } catch (e) {
        if (e instanceof ApplicationFailure && e.nonRetryable) return { settings, ...(source ? { source } : {}), refusal: e.message };
        throw e;
      }
    },

    /**
     * STARTED's watchdog: checks every `intervalMs` that the data flow is there and running, and
     * that the counterparty's process is still live, heartbeating all along (a healthy transfer
     * adds nothing to its history). Returns what needs the process's attention.
     */
    async watchTransfer(req: {
      flow: DataFlowInput;
      taskQueue: string;
      intervalMs: number;
      lostAfterMs: number;
      counterparty?: { address: string; pid: string };
    }): Promise<WatchAlarm> {
      const ctx = Context.current();
      let flowSilentSince: number | undefined;
      let peerSilentSince: number | undefined;
      let peerEnded: string | undefined;
      for (;;) {
        // sleep the interval in heartbeat-sized steps: cancellation (the process left STARTED) arrives through them
        for (let left = req.intervalMs; left > 0; left -= 5_000) {
          ctx.heartbeat();
          await ctx.sleep(Math.min(left, 5_000));
        }
        try {
          // closed without finishing (an operator terminated or reset it): its status is frozen, so ask Temporal first
          const execution = await client.withDeadline(Date.now() + 10_000, () => client.workflow.getHandle(dataFlowWorkflowIdOf(req.flow)).describe());
          if (execution.status.name !== 'RUNNING' && execution.status.name !== 'COMPLETED') {
            return { kind: 'flowEnded', state: execution.status.name, completed: false, detail: `its workflow is ${execution.status.name.toLowerCase()}` };
          }
          const status = await flowStatus(req.flow);
          flowSilentSince = undefined;
          if (status.outcome === 'completed' || status.outcome === 'failed' || status.outcome === 'terminated') {
            return { kind: 'flowEnded', state: status.state, completed: status.outcome === 'completed', ...(status.error ? { detail: status.error } : {}) };
          }
        } catch (e) {
          if (e instanceof WorkflowNotFoundError) return { kind: 'flowGone' };
          flowSilentSince ??= Date.now();
          if (Date.now() - flowSilentSince >= req.lostAfterMs) {
            return { kind: 'dataPlaneLost', detail: `its data flow has not answered for ${Math.round((Date.now() - flowSilentSince) / 1000)} s (${(e as Error).message})` };
          }
        }
        if (!req.counterparty) continue;
        try {
          const state = await transportFor(req.counterparty.address).state(req.counterparty.address, req.counterparty.pid);
          peerSilentSince = undefined;
          if (state === 'COMPLETED' || state === 'TERMINATED') {
            // seen twice in a row: its own message to us had a whole interval to arrive
            if (peerEnded === state) return { kind: 'peerEnded', state };
            peerEnded = state;
          } else peerEnded = undefined;
        } catch (e) {
          peerSilentSince ??= Date.now();
          if (Date.now() - peerSilentSince >= req.lostAfterMs) {
            return { kind: 'peerLost', detail: `no answer for ${Math.round((Date.now() - peerSilentSince) / 1000)} s (${(e as Error).message})` };
          }
        }
      }
    },

    // ---- kept for processes started before the state-table rewrite (workflows/v1) ----

    /** The worker's defaults with the transfer's overrides. */
    async transferSettings(overrides?: TransferSettingsOverrides): Promise<TransferSettings> {
      return TransferSettingsSchema.parse({ ...defaults, ...overrides });
    },

    /** Provider: where an asset's bytes are. */
    async resolveAsset(assetId: string): Promise<DataAddress> {
      const address = config.assets[assetId];
      if (!address) throw ApplicationFailure.nonRetryable(`unknown asset ${assetId}`, 'UnknownAsset');
      return address; // the payload codec encrypts it, credentials and all
    },

    async selectDataPlane(req: { flowId: string; transferType: string; preferred?: string }): Promise<DataPlaneRef> {
      return chooseDataPlane(req);
    },

    /**
     * One data-plane signaling call. `prepare` and `start` create the DataFlow on first use
     * (update-with-start), so a repeated call reaches the same flow and is idempotent.
     */
    async callDataPlane(req: { flow: DataFlowInput; taskQueue: string } & DataPlaneCall): Promise<DataFlowResponse> {
      const plane = deps.dps?.planes.dps(req.flow.instanceId);
      if (plane) return callDpsDataPlane(deps.dps!, plane, req, await transferContext(req.flow));
      try {
        return await callDataFlow(client, req);
      } catch (e) {
        if (e instanceof DataFlowRefused) throw ApplicationFailure.nonRetryable(e.message, 'DataPlaneRefused');
        if (e instanceof DataFlowGone) throw ApplicationFailure.nonRetryable(e.message, 'DataFlowGone');
        throw e;
      }
    },

    /** What the data plane says about a flow (for stale waits). */
    async dataFlowState(req: { flow: DataFlowInput }): Promise<{ found: boolean; state?: DataFlowState }> {
      try {
        const status = await flowStatus(req.flow);
        return { found: true, state: status.state };
      } catch (e) {
        if (e instanceof WorkflowNotFoundError) return { found: false };
        throw e;
      }
    },

    /** `messageId` is the same on every retry: a receiver that took the first attempt answers the next as done. */
    async requestTransfer(req: { address: string; message: TransferRequestMessage; messageId?: string }): Promise<{ providerPid: string }> {
      return rejectedIsFinal(() => transportFor(req.address).requestTransfer(req.address, req.message, req.messageId ? { messageId: req.messageId } : {}));
    },

    async sendToCounterparty(req: { address: string; receiverPid: string; message: ProcessMessage; messageId?: string }): Promise<void> {
      return rejectedIsFinal(() => transportFor(req.address).send(req.address, req.receiverPid, req.message, req.messageId ? { messageId: req.messageId } : {}));
    },
  };
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export type ControlPlaneActivities = ReturnType<typeof createControlPlaneActivities>;
