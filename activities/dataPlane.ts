import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { DataAddress } from '../src/DataAddress.js';
import type { DataPlaneConfig } from '../src/config.js';
import { checkHttpUrl, UrlPolicyError, type HttpPolicy } from '../src/urlPolicy.js';
import { FileAddressError } from '../src/FileAddress.js';
import { planProvisioning, ProvisionRejected, type DeprovisionReason, type Provisioner, type ProvisionResult, type ProvisionSide, type Role } from '../src/Provisioner.js';
import type { CallbackTarget, DataFlowSetup } from '../src/DataFlow.js';
import { DataFlowSettingsSchema, durationMs, type DataFlowSettings } from '../src/settings.js';
import { dataPlaneCallbackSignal, type DataPlaneCallback } from '../src/TransferProcess.js';
import { controlPlaneOfCallbackId, sendDpsCallback, type DpsCallbackDeps } from './dps/controlPlaneCallbacks.js';
import { copyFile, TransferRejected } from './transfer/FileTransfer.js';
import { pushHttp } from './transfer/HttpTransfer.js';

/** Side effects of the data plane: provisioning, moving bytes, calling the control plane back. */

export interface DataPlaneDeps {
  config: DataPlaneConfig;
  provisioners: Provisioner[];
  client: Client;
  /** Builds the (signed, expiring) URL an external provisioning service calls back on. */
  callbackUrl(target: { workflowId: string; op: 'provision' | 'deprovision'; provisioner: string; side: ProvisionSide; round?: string; expiresAt: Date }): string;
  /** DPS control planes (flows a DPS control plane drives call back over HTTP). */
  dps?: DpsCallbackDeps;
}

/**
 * What binds a callback URL to one provisioning round: the round's nonce, chosen by the DataFlow
 * (one per provisioning or deprovisioning round), and when the URL stops working (ISO 8601).
 * Without `expiresAt` the URL lives as long as the flow waits for it: this attempt's
 * start-to-close timeout plus the (de)provision timeout.
 */
export interface CallbackRound {
  round?: string;
  expiresAt?: string;
}

export function createDataPlaneActivities(deps: DataPlaneDeps) {
  const { config } = deps;
  const settings: DataFlowSettings = DataFlowSettingsSchema.parse(config.dataFlow);
  const byName = new Map(deps.provisioners.map((p) => [p.name, p]));
  const provisionerNamed = (name: string): Provisioner => {
    const p = byName.get(name);
    if (!p) throw ApplicationFailure.nonRetryable(`no provisioner named ${name} on data plane ${config.instanceId}`);
    return p;
  };
  /** Errors no retry fixes (a refusal, an address that escapes, a sealed value our key cannot open) fail the activity at once. */
  const nonRetryable = <T>(fn: () => Promise<T>): Promise<T> =>
    Promise.resolve()
      .then(fn)
      .catch((e: unknown) => {
        if (e instanceof ProvisionRejected || e instanceof FileAddressError || e instanceof TransferRejected) throw ApplicationFailure.nonRetryable(e.message, e.name);
        throw e;
      });
  // Where HTTP requests may go: destinations under the allowlist if there is one, else (and sources
  // always) any address the network policy allows, checked again at connect time.
  const network = { allowPrivateNetworks: config.allowPrivateNetworks, ...(config.allowedNetworks ? { allowedNetworks: config.allowedNetworks } : {}) };
  const destinationPolicy: HttpPolicy = { ...network, ...(config.allowedHttpDestinations ? { allowedUrls: config.allowedHttpDestinations } : {}) };
  const callbackUrlFor = (op: 'provision' | 'deprovision', req: { provisioner: string; side: ProvisionSide } & CallbackRound): string => {
    const info = Context.current().info;
    const wait = durationMs(op === 'provision' ? settings.provisionTimeout : settings.deprovisionTimeout);
    const expiresAt = req.expiresAt ? new Date(req.expiresAt) : new Date(Date.now() + (info.startToCloseTimeoutMs ?? 0) + wait);
    if (Number.isNaN(expiresAt.getTime())) throw ApplicationFailure.nonRetryable(`expiresAt ${JSON.stringify(req.expiresAt)} is not a date`);
    return deps.callbackUrl({ workflowId: workflowId(), op, provisioner: req.provisioner, side: req.side, ...(req.round !== undefined ? { round: req.round } : {}), expiresAt });
  };
  const provisionWith = (req: { flowId: string; role: Role; provisioner: string; side: ProvisionSide; address: DataAddress } & CallbackRound): Promise<ProvisionResult> => {
    const provisioner = provisionerNamed(req.provisioner);
    const callbackUrl = callbackUrlFor('provision', req);
    return nonRetryable(() =>
      provisioner.provision({ flowId: req.flowId, workflowId: workflowId(), role: req.role, side: req.side, address: req.address, callbackUrl, ...(req.round ? { round: req.round } : {}) }),
    );
  };
  const workflowId = (): string => {
    const id = Context.current().info.workflowExecution?.workflowId;
    if (!id) throw ApplicationFailure.nonRetryable('data-plane activities run only inside a DataFlow workflow');
    return id;
  };

  return {
    /** A new DataFlow's settings and this worker's provisioners in configured order (it plans from them). */
    async dataFlowSetup(): Promise<DataFlowSetup> {
      return { settings, provisioners: deps.provisioners.map((p) => p.match) };
    },

    /** One provisioner on the address the previous ones produced; its rewrite (if any) comes back sealed. */
    async provisionStep(req: { flowId: string; role: Role; provisioner: string; side: ProvisionSide; address: DataAddress } & CallbackRound): Promise<ProvisionResult> {
      return provisionWith(req);
    },

    async deprovisionStep(req: { flowId: string; provisioner: string; side: ProvisionSide; resource: Record<string, string>; reason: DeprovisionReason } & CallbackRound) {
      const callbackUrl = callbackUrlFor('deprovision', req);
      const { round: _round, expiresAt: _expiresAt, ...request } = req;
      return nonRetryable(() => provisionerNamed(req.provisioner).deprovision({ ...request, ...(req.round ? { round: req.round } : {}), callbackUrl }));
    },

    // ---- kept for DataFlows started before the state-table rewrite (workflows/v1) ----

    async dataFlowSettings(): Promise<DataFlowSettings> {
      return settings;
    },

    async planProvisioning(req: { role: Role; source?: DataAddress; destination?: DataAddress }) {
      const bySide = planProvisioning(deps.provisioners.map((p) => p.match), req.role, req);
      // v1 planned sources first, then destinations
      return [...bySide.filter((p) => p.side === 'source'), ...bySide.filter((p) => p.side === 'destination')];
    },

    async provision(req: { flowId: string; role: Role; provisioner: string; side: ProvisionSide; address: DataAddress } & CallbackRound): Promise<ProvisionResult & { address: DataAddress }> {
      const result = await provisionWith(req);
      return { ...result, address: result.address ?? req.address };
    },

    async deprovision(req: { flowId: string; provisioner: string; side: ProvisionSide; resource: Record<string, string>; reason: DeprovisionReason } & CallbackRound) {
      const callbackUrl = callbackUrlFor('deprovision', req);
      const { round: _round, expiresAt: _expiresAt, ...request } = req;
      return nonRetryable(() => provisionerNamed(req.provisioner).deprovision({ ...request, callbackUrl }));
    },

    /** Moves the bytes. A retry (after a crash, say) resumes from the last heartbeated offset. */
    async transfer(req: { flowId: string; source: DataAddress; destination: DataAddress }): Promise<{ bytes: number; sha256: string }> {
      const ctx = Context.current();
      const resumeFrom = (ctx.info.heartbeatDetails as { offset?: number } | undefined)?.offset ?? 0;
      const { source, destination } = req;
      let offset = resumeFrom;
      // heartbeats carry cancellation in: beat while a source is silent too (a live feed with nothing
      // to send yet), or a suspend or terminate would not reach the transfer until bytes came
      const ticker = setInterval(() => ctx.heartbeat({ offset }), 1000);
      ctx.cancellationSignal.addEventListener('abort', () => clearInterval(ticker), { once: true });
      const common = {
        root: config.fileRoot,
        source,
        destination,
        ...(config.rateLimitBytesPerSec ? { rateLimitBytesPerSec: config.rateLimitBytesPerSec } : {}),
        destinationPolicy,
        sourcePolicy: network,
        signal: ctx.cancellationSignal,
        onProgress: (at: number) => {
          offset = at;
          ctx.heartbeat({ offset });
        },
      };
      try {
        if (source.endpointType === 'File' && destination.endpointType === 'File') {
          const { bytes, sha256 } = await nonRetryable(() => copyFile({ ...common, resumeFrom }));
          return { bytes, sha256 };
        }
        if (destination.endpointType === 'HttpData') {
          try {
            checkHttpUrl(destination.endpoint, destinationPolicy, 'HttpData destination'); // before the source is opened
          } catch (e) {
            if (e instanceof UrlPolicyError) throw ApplicationFailure.nonRetryable(`${e.message} (data plane ${config.instanceId})`, 'DestinationNotAllowed');
            throw e;
          }
          return await nonRetryable(() => pushHttp(common));
        }
        throw ApplicationFailure.nonRetryable(`transfer ${source.endpointType} -> ${destination.endpointType} is not supported by this data plane`);
      } finally {
        clearInterval(ticker);
      }
    },

    /**
     * Calls the control plane back: a Temporal signal to the TransferProcess, or a DPS callback over
     * HTTP when the flow's control plane is a DPS one (`target`, or the `callbackWorkflowId` the DPS
     * API gives the flows it creates). A process that is gone cannot be helped by retrying.
     */
    async notifyControlPlane(req: { workflowId: string; callback: DataPlaneCallback; target?: CallbackTarget }): Promise<void> {
      const dpsControlPlane = req.target?.kind === 'dps' ? req.target.controlPlaneId : req.target ? undefined : controlPlaneOfCallbackId(req.workflowId);
      if (dpsControlPlane) {
        if (!deps.dps) throw ApplicationFailure.nonRetryable(`data plane ${config.instanceId} does not speak DPS`);
        return sendDpsCallback(deps.dps, { controlPlaneId: dpsControlPlane, dataFlowWorkflowId: workflowId(), callback: req.callback });
      }
      const target = req.target?.kind === 'temporal' ? req.target.workflowId : req.workflowId;
      try {
        await deps.client.workflow.getHandle(target).signal(dataPlaneCallbackSignal, req.callback);
      } catch (e) {
        if (e instanceof WorkflowNotFoundError) throw ApplicationFailure.nonRetryable(`transfer process ${target} is gone`);
        throw e;
      }
    },
  };
}

export type DataPlaneActivities = ReturnType<typeof createDataPlaneActivities>;
