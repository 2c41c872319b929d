import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { admitTransferRequest, type Admission } from '../src/admission.js';
import type { DataAddress } from '../src/DataAddress.js';
import { dataFlowStatusQuery, type DataFlowInput, type DataFlowOutcome, type DataFlowResponse, type DataFlowStartMessage, type ReasonMessage } from '../src/DataFlow.js';
import type { DataFlowState } from '../src/DataFlowState.js';
import type { ControlPlaneConfig } from '../src/config.js';
import type { ProcessMessage, TransferRequestMessage } from '../src/dsp.js';
import { counterpartyOwning, isUnder } from '../src/urlPolicy.js';
import { dataPlaneTaskQueue, IN_CLUSTER_SCHEME, TRANSFER_PROCESS_WORKFLOW } from '../src/ids.js';
import { durationMs, type TransferSettings, type TransferSettingsOverrides } from '../src/settings.js';
import { TransferSettingsSchema } from '../src/schemas/settings.js';
import { transferProcessStatusQuery, type DataPlaneRef, type TransferProcessInput, type TransferProcessStatus, type WatchAlarm } from '../src/TransferProcess.js';
import { watchdogAlarmSignal, type Suspect, type SweepResult } from '../src/Watchdog.js';
import { callDataFlow, dataFlowWorkflowIdOf, DataFlowGone, DataFlowRefused } from './dataFlowCalls.js';
import { callDpsDataPlane, dpsDataFlowState, type DataPlaneDirectory, type DpsDataPlaneClientDeps, type TransferContext } from './dps/dataPlaneClient.js';
import { CounterpartyBusy, CounterpartyRejected, type CounterpartyTransport } from '../src/Transport.js';

/** Side effects of the control plane: talking to its data planes and to the counterparty. */

export interface ControlPlaneDeps {
  config: ControlPlaneConfig;
  client: Client;
  transports: CounterpartyTransport[];
  /** Data planes reached over DPS HTTP (configured with `dps`, or registered). */
  dps?: DpsDataPlaneClientDeps & { planes: DataPlaneDirectory };
}

/** What `admitTransferRequest` reads of a provider's TransferProcessInput (pass the input itself). */
export type AdmitTransferRequest = Pick<TransferProcessInput, 'agreementId' | 'assetId'> & {
  /** DSP `format`. */
  transferType: string;
  counterpartyId?: string | undefined;
  /** Used to find the counterparty when `counterpartyId` is absent (`temporal://<id>`, or a configured DSP address). */
  counterpartyAddress?: string | undefined;
  dataDestination?: DataAddress | undefined;
};

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
  /** Why this transfer cannot be opened (not admitted, unknown asset, no data plane serves it…); it then ends with this reason. */
  refusal?: string;
  /** A provider's admission refusal: its DSP error code (UnknownAgreement, UnsupportedFormat, InvalidDataAddress). */
  refusalCode?: string;
}

export function createControlPlaneActivities(deps: ControlPlaneDeps) {
  const { config, client } = deps;
  const defaults = TransferSettingsSchema.parse(config.transfer);

  const transportFor = (address: string): CounterpartyTransport => {
    const t = deps.transports.find((x) => x.canReach(address));
    if (!t) throw ApplicationFailure.nonRetryable(`no transport reaches counterparty address ${address}`);
    return t;
  };
  /** The provider's admission (src/admission.ts) against this worker's agreements, assets and data planes. */
  const admit = (req: AdmitTransferRequest): Admission => {
    const counterpartyId =
      req.counterpartyId ??
      (req.counterpartyAddress?.startsWith(IN_CLUSTER_SCHEME)
        ? req.counterpartyAddress.slice(IN_CLUSTER_SCHEME.length).replace(/\/+$/, '')
        : req.counterpartyAddress
          ? counterpartyOwning(config.dsp?.counterparties ?? [], req.counterpartyAddress)?.id
          : undefined);
    if (!counterpartyId) return { admitted: false, code: 'UnknownAgreement', reason: `no agreement ${req.agreementId} with this counterparty` };
    return admitTransferRequest(config, { counterpartyId, agreementId: req.agreementId, assetId: req.assetId, format: req.transferType, dataAddress: req.dataDestination });
  };
  const rejectedIsFinal = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof CounterpartyRejected) throw ApplicationFailure.nonRetryable(e.message, 'CounterpartyRejected');
      // a busy counterparty said when to come back: the next attempt waits that long, not the backoff's guess
      if (e instanceof CounterpartyBusy) throw ApplicationFailure.create({ message: e.message, type: 'CounterpartyBusy', nextRetryDelay: e.retryAfterMs });
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
   * A STARTED transfer as the watchdog sees it: its data flow (gone, closed behind its back, ended
   * without telling, silent for lostAfter) and its counterparty's process (ended twice in a row,
   * unreachable for lostAfter).
   */
  const checkTransfer = async (status: TransferProcessStatus, was: Suspect, lostAfterMs: number): Promise<{ alarm?: WatchAlarm; suspect?: Suspect }> => {
    const now = Date.now();
    const suspect: Suspect = {};
    const flow: DataFlowInput = { flowId: status.processId, connectorId: status.connectorId, processId: status.processId, role: status.role, instanceId: status.dataPlane!.id, callbackWorkflowId: '' };
    try {
      // closed without finishing (an operator terminated or reset it): its status is frozen, so ask Temporal first (a DPS data plane's flow is no workflow of ours)
      if (!deps.dps?.planes.dps(flow.instanceId)) {
        const execution = await client.withDeadline(now + 10_000, () => client.workflow.getHandle(dataFlowWorkflowIdOf(flow)).describe());
        if (execution.status.name !== 'RUNNING' && execution.status.name !== 'COMPLETED') {
          return { alarm: { kind: 'flowEnded', state: execution.status.name, completed: false, detail: `its workflow is ${execution.status.name.toLowerCase()}` } };
        }
      }
      const s = await flowStatus(flow);
      if (s.outcome === 'completed' || s.outcome === 'failed' || s.outcome === 'terminated') {
        return { alarm: { kind: 'flowEnded', state: s.state, completed: s.outcome === 'completed', ...(s.error ? { detail: s.error } : {}) } };
      }
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) return { alarm: { kind: 'flowGone' } };
      suspect.flowSilentSince = was.flowSilentSince ?? now;
      if (now - suspect.flowSilentSince >= lostAfterMs) {
        return { alarm: { kind: 'dataPlaneLost', detail: `its data flow has not answered for ${Math.round((now - suspect.flowSilentSince) / 1000)} s (${(e as Error).message})` } };
      }
    }
    if (status.counterpartyPid) {
      try {
        const state = await transportFor(status.counterpartyAddress).state(status.counterpartyAddress, status.counterpartyPid);
        if (state === 'COMPLETED' || state === 'TERMINATED') {
          if (was.peerEnded === state) return { alarm: { kind: 'peerEnded', state } };
          suspect.peerEnded = state;
        }
      } catch (e) {
        // a counterparty that answers "busy" (429, 503) is there: only silence counts towards lostAfter
        if (!(e instanceof CounterpartyBusy)) {
          suspect.peerSilentSince = was.peerSilentSince ?? now;
          if (now - suspect.peerSilentSince >= lostAfterMs) {
            return { alarm: { kind: 'peerLost', detail: `no answer for ${Math.round((now - suspect.peerSilentSince) / 1000)} s (${(e as Error).message})` } };
          }
        }
      }
    }
    return Object.keys(suspect).length ? { suspect } : {};
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
    if (flow.transfer) {
      const t = flow.transfer;
      const counterparty = t.counterpartyId ?? config.dsp?.counterparties.find((c) => isUnder(t.counterpartyAddress, c.address))?.id;
      return { transferType: t.transferType, agreementId: t.agreementId, datasetId: t.assetId, participantId: config.connectorId, counterPartyId: counterparty ?? t.counterpartyAddress };
    }
    // a process that does not say (started before it did): ask it
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
        // admitted like a DSP request (src/admission.ts): in-cluster requests are admitted only here
        const admission = admit({ counterpartyId: req.counterpartyId, agreementId: req.agreementId, assetId: req.assetId, transferType: req.transferType, dataDestination: req.dataDestination });
        if (!admission.admitted) return { settings, refusal: admission.reason, refusalCode: admission.code };
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
     * One sweep of the connector watchdog (workflows/ConnectorWatchdogWorkflow.ts): every STARTED
     * transfer of this connector is checked (its data flow is there and running; its counterparty's
     * process is live), and one that needs attention gets a `watchdogAlarm` signal. What is only
     * suspicious so far comes back as a suspect, checked again next time.
     */
    async sweepStartedTransfers(req: { connectorId: string; suspects: Record<string, Suspect> }): Promise<SweepResult> {
      const lostAfterMs = durationMs(config.watchdog.lostAfter);
      const ctx = Context.current();
      const query = `WorkflowType = '${TRANSFER_PROCESS_WORKFLOW}' AND ExecutionStatus = 'Running' AND FerryTransferState = 'STARTED' AND WorkflowId STARTS_WITH 'transfer-${req.connectorId}-'`;
      const started: string[] = [];
      for await (const w of client.workflow.list({ query })) started.push(w.workflowId);
      const suspects: Record<string, Suspect> = {};
      let alarms = 0;
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < started.length; i = next++) {
          ctx.heartbeat({ checked: i });
          const handle = client.workflow.getHandle(started[i]!);
          const status = await handle.query(transferProcessStatusQuery).catch(() => undefined);
          if (!status || status.state !== 'STARTED' || !status.dataPlane) continue;
          const checked = await checkTransfer(status, req.suspects[status.processId] ?? {}, lostAfterMs);
          if (checked.suspect) suspects[status.processId] = checked.suspect;
          if (checked.alarm) {
            alarms++;
            await handle.signal(watchdogAlarmSignal, checked.alarm).catch(() => undefined);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(config.watchdog.parallelism, started.length) }, worker));
      return { checked: started.length, alarms, suspects, intervalMs: durationMs(config.watchdog.interval), lostAfterMs: durationMs(config.watchdog.lostAfter) };
    },

    // ---- kept for processes started before the state-table rewrite (workflows/v1) ----

    /** The worker's defaults with the transfer's overrides. */
    async transferSettings(overrides?: TransferSettingsOverrides): Promise<TransferSettings> {
      return TransferSettingsSchema.parse({ ...defaults, ...overrides });
    },

    /**
     * Provider: may its counterparty have this transfer (src/admission.ts, against this worker's
     * agreements, assets and data planes)? `openTransfer` runs it for every provider process (so
     * in-cluster requests are admitted by the provider's own worker); this activity is the same
     * check on its own. Deterministic: a refusal is an answer (`admitted: false`, a code and a
     * reason meant for the counterparty), never a retry. The counterparty is `counterpartyId` (set
     * by the DSP server and the in-cluster transport); without it, the in-cluster connector of
     * `temporal://<id>`, or the configured DSP counterparty owning the address.
     */
    async admitTransferRequest(req: AdmitTransferRequest): Promise<Admission> {
      return admit(req);
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

    /** `counterpartyId`: a provider process's bound counterparty (TransferProcessInput.counterpartyId), when it has one. */
    async sendToCounterparty(req: { address: string; receiverPid: string; message: ProcessMessage; messageId?: string; counterpartyId?: string }): Promise<void> {
      const opts = { ...(req.messageId ? { messageId: req.messageId } : {}), ...(req.counterpartyId ? { counterpartyId: req.counterpartyId } : {}) };
      return rejectedIsFinal(() => transportFor(req.address).send(req.address, req.receiverPid, req.message, opts));
    },
  };
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export type ControlPlaneActivities = ReturnType<typeof createControlPlaneActivities>;
