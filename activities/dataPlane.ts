import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { DataAddress } from '../src/DataAddress.js';
import type { DataPlaneConfig } from '../src/config.js';
import { checkHttpUrl, UrlPolicyError, type HttpPolicy } from '../src/urlPolicy.js';
import { FileAddressError } from '../src/FileAddress.js';
import { planProvisioning, ProvisionRejected, type DeprovisionReason, type Provisioner, type ProvisionResult, type ProvisionSide, type Role } from '../src/Provisioner.js';
import type { CallbackTarget, DataFlowSetup } from '../src/DataFlow.js';
import { durationMs, type DataFlowSettings } from '../src/settings.js';
import { DataFlowSettingsSchema } from '../src/schemas/settings.js';
import { dataPlaneCallbackSignal, type DataPlaneCallback } from '../src/TransferProcess.js';
import { controlPlaneOfCallbackId, sendDpsCallback, type DpsCallbackDeps } from './dps/controlPlaneCallbacks.js';
import { copyFile, SourceChanged } from './transfer/FileTransfer.js';
import { TransferRejected } from './transfer/errors.js';
import { pushHttp } from './transfer/HttpTransfer.js';
import { RetryAfterProgress, TransferAttempt, type TransferProgress } from './transfer/TransferAttempt.js';

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

export interface TransferRequest {
  flowId: string;
  source: DataAddress;
  destination: DataAddress;
  /**
   * Optional: where an earlier run of this flow's transfer got to (its last heartbeat details, e.g.
   * from a failure's lastHeartbeatDetails), when the workflow schedules a new run. Heartbeat
   * details of this run's own earlier attempts take precedence.
   */
  resumeFrom?: TransferProgress;
  /**
   * Optional: this run continues an earlier run of the flow (a resume after a suspension): an
   * HttpData sink is asked what it holds before anything is sent. (A File push always looks for the
   * earlier run's part.)
   */
  continues?: boolean;
}

export interface TransferResult {
  bytes: number;
  sha256: string;
  /** Where this attempt started: 0, a verified resume offset, or the bytes an HTTP sink said it held. */
  resumedFrom?: number;
  /** An earlier attempt had delivered and recorded the copy (its completion was lost): nothing was copied. */
  alreadyDelivered?: boolean;
}

/** A tag unique per attempt within a workflow run, safe in a file name. */
export const attemptTag = (activityId: string, attempt: number): string => `${activityId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-${attempt}`;

export function createDataPlaneActivities(deps: DataPlaneDeps) {
  const { config } = deps;
  const settings: DataFlowSettings = DataFlowSettingsSchema.parse(config.dataFlow);
  const byName = new Map(deps.provisioners.map((p) => [p.name, p]));
  const provisionerNamed = (name: string): Provisioner => {
    const p = byName.get(name);
    if (!p) throw ApplicationFailure.nonRetryable(`no provisioner named ${name} on data plane ${config.instanceId}`);
    return p;
  };
  /** Errors no retry fixes fail the activity at once; a failure after progress asks for the retry at once. */
  const toFailure = (e: unknown): unknown => {
    if (e instanceof TransferRejected) return ApplicationFailure.nonRetryable(e.message, e.name);
    if (e instanceof RetryAfterProgress) return ApplicationFailure.create({ message: e.message, type: e.error.name, nextRetryDelay: e.retryAfterMs, cause: e.error });
    return e;
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

    /**
     * Moves the bytes. Heartbeats on a timer (`transferHeartbeatInterval`) with the resume point;
     * a retry takes the previous attempt's partial file over (File) or asks the sink where it is
     * (HttpData), and a copy an earlier attempt finished is recognised and returned as it is.
     */
    async transfer(req: TransferRequest): Promise<TransferResult> {
      const ctx = Context.current();
      const { info } = ctx;
      const { source, destination } = req;
      if (destination.endpointType === 'HttpData') {
        try {
          checkHttpUrl(destination.endpoint, destinationPolicy, 'HttpData destination'); // before the source is opened
        } catch (e) {
          if (e instanceof UrlPolicyError) throw ApplicationFailure.nonRetryable(`${e.message} (data plane ${config.instanceId})`, 'DestinationNotAllowed');
          throw e;
        }
      } else if (source.endpointType !== 'File' || destination.endpointType !== 'File') {
        throw ApplicationFailure.nonRetryable(`transfer ${source.endpointType} -> ${destination.endpointType} is not supported by this data plane`);
      }
      const attempt = new TransferAttempt({
        attempt: info.attempt,
        previous: info.heartbeatDetails ?? req.resumeFrom,
        heartbeat: (details) => ctx.heartbeat(details),
        heartbeatIntervalMs: durationMs(settings.transferHeartbeatInterval),
        maxAttemptsWithoutProgress: settings.transferMaxAttempts,
      });
      try {
        attempt.start();
      } catch (e) {
        throw ApplicationFailure.nonRetryable((e as Error).message, (e as Error).name);
      }
      const common = {
        root: config.fileRoot,
        flowId: req.flowId,
        source,
        destination,
        ...(config.rateLimitBytesPerSec ? { rateLimitBytesPerSec: config.rateLimitBytesPerSec } : {}),
        signal: ctx.cancellationSignal,
      };
      try {
        if (destination.endpointType === 'HttpData') {
          const r = await pushHttp({
            ...common,
            destinationPolicy,
            sourcePolicy: network,
            probeResume: info.attempt > 1 || (attempt.previous?.offset ?? 0) > 0 || req.continues === true,
            onProgress: (p) => attempt.update(p),
          });
          return { bytes: r.bytes, sha256: r.sha256, resumedFrom: r.resumedFrom };
        }
        const r = await copyFile({
          ...common,
          // unique per attempt in this workflow run: names the attempt's .part
          attempt: attemptTag(info.activityId, info.attempt),
          ...(attempt.previous?.part ? { resume: { part: attempt.previous.part } } : {}),
          onProgress: (p) => attempt.update(p),
        });
        return { bytes: r.bytes, sha256: r.sha256, resumedFrom: r.resumedFrom, ...(r.alreadyDelivered ? { alreadyDelivered: true } : {}) };
      } catch (e) {
        if (e instanceof SourceChanged) attempt.forgetProgress();
        throw toFailure(attempt.failure(e));
      } finally {
        attempt.stop();
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
