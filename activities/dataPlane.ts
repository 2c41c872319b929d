import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { DataAddress } from '../src/DataAddress.js';
import type { DataPlaneConfig } from '../src/config.js';
import { checkHttpUrl, UrlPolicyError, type HttpPolicy } from '../src/urlPolicy.js';
import { FileAddressError } from '../src/FileAddress.js';
import { ProvisionRejected, type DeprovisionReason, type Provisioner, type ProvisionResult, type ProvisionSide, type Role } from '../src/Provisioner.js';
import { SecretBoxError, type SecretBox } from '../src/secrets.js';
import { DataFlowSettingsSchema, type DataFlowSettings } from '../src/settings.js';
import { dataPlaneCallbackSignal, type DataPlaneCallback } from '../src/TransferProcess.js';
import { copyFile, TransferRejected } from './transfer/FileTransfer.js';
import { pushHttp } from './transfer/HttpTransfer.js';

/** Side effects of the data plane: provisioning, moving bytes, calling the control plane back. */

export interface DataPlaneDeps {
  config: DataPlaneConfig;
  provisioners: Provisioner[];
  client: Client;
  secrets: SecretBox;
  /** Builds the URL an external provisioning service calls back on. */
  callbackUrl(target: { workflowId: string; op: 'provision' | 'deprovision'; provisioner: string; side: ProvisionSide }): string;
}

export function createDataPlaneActivities(deps: DataPlaneDeps) {
  const { config, secrets } = deps;
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
        if (e instanceof ProvisionRejected || e instanceof FileAddressError || e instanceof TransferRejected || e instanceof SecretBoxError) {
          throw ApplicationFailure.nonRetryable(e.message, e.name);
        }
        throw e;
      });
  // Where HTTP requests may go: destinations under the allowlist if there is one, else (and sources
  // always) any address the network policy allows, checked again at connect time.
  const network = { allowPrivateNetworks: config.allowPrivateNetworks, ...(config.allowedNetworks ? { allowedNetworks: config.allowedNetworks } : {}) };
  const destinationPolicy: HttpPolicy = { ...network, ...(config.allowedHttpDestinations ? { allowedUrls: config.allowedHttpDestinations } : {}) };
  const workflowId = (): string => {
    const id = Context.current().info.workflowExecution?.workflowId;
    if (!id) throw ApplicationFailure.nonRetryable('data-plane activities run only inside a DataFlow workflow');
    return id;
  };

  return {
    async dataFlowSettings(): Promise<DataFlowSettings> {
      return settings;
    },

    /** Which provisioners apply to a flow: each side's address against each provisioner, in config order. */
    async planProvisioning(req: { role: Role; source?: DataAddress; destination?: DataAddress }) {
      const planned: { provisioner: string; side: ProvisionSide }[] = [];
      for (const side of ['source', 'destination'] as const) {
        const address = req[side];
        if (!address) continue;
        for (const p of deps.provisioners) if (p.appliesTo(req.role, side, address)) planned.push({ provisioner: p.name, side });
      }
      return planned;
    },

    async provision(req: { flowId: string; role: Role; provisioner: string; side: ProvisionSide; address: DataAddress }): Promise<ProvisionResult> {
      const provisioner = provisionerNamed(req.provisioner);
      const callbackUrl = deps.callbackUrl({ workflowId: workflowId(), op: 'provision', provisioner: req.provisioner, side: req.side });
      const result = await nonRetryable(() =>
        provisioner.provision({ flowId: req.flowId, workflowId: workflowId(), role: req.role, side: req.side, address: secrets.open(req.address), callbackUrl }),
      );
      // Whatever the provisioner handed out (a token, say) enters the history sealed.
      return { ...result, address: secrets.seal(result.address) };
    },

    async deprovision(req: { flowId: string; provisioner: string; side: ProvisionSide; resource: Record<string, string>; reason: DeprovisionReason }) {
      const callbackUrl = deps.callbackUrl({ workflowId: workflowId(), op: 'deprovision', provisioner: req.provisioner, side: req.side });
      return nonRetryable(() => provisionerNamed(req.provisioner).deprovision({ ...req, callbackUrl }));
    },

    /** Moves the bytes. A retry (after a crash, say) resumes from the last heartbeated offset. */
    async transfer(req: { flowId: string; source: DataAddress; destination: DataAddress }): Promise<{ bytes: number; sha256: string }> {
      const ctx = Context.current();
      const resumeFrom = (ctx.info.heartbeatDetails as { offset?: number } | undefined)?.offset ?? 0;
      const [source, destination] = await nonRetryable(async () => [secrets.open(req.source), secrets.open(req.destination)] as const);
      const common = {
        root: config.fileRoot,
        source,
        destination,
        ...(config.rateLimitBytesPerSec ? { rateLimitBytesPerSec: config.rateLimitBytesPerSec } : {}),
        destinationPolicy,
        sourcePolicy: network,
        signal: ctx.cancellationSignal,
        onProgress: (offset: number) => ctx.heartbeat({ offset }),
      };
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
        return nonRetryable(() => pushHttp(common));
      }
      throw ApplicationFailure.nonRetryable(`transfer ${source.endpointType} -> ${destination.endpointType} is not supported by this data plane`);
    },

    /** Calls the TransferProcess back. A process that is gone cannot be helped by retrying. */
    async notifyControlPlane(req: { workflowId: string; callback: DataPlaneCallback }): Promise<void> {
      try {
        await deps.client.workflow.getHandle(req.workflowId).signal(dataPlaneCallbackSignal, req.callback);
      } catch (e) {
        if (e instanceof WorkflowNotFoundError) throw ApplicationFailure.nonRetryable(`transfer process ${req.workflowId} is gone`);
        throw e;
      }
    },
  };
}

export type DataPlaneActivities = ReturnType<typeof createDataPlaneActivities>;
