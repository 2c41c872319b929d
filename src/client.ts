import { randomUUID } from 'node:crypto';
import { ApplicationFailure, Client, Connection, WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { z } from 'zod';
import { ferryDataConverter } from './codec.js';
import { connectionOptions, resolveTemporalConnection, type ResolveOptions, type TemporalConnection } from './connection.js';
import { urlCredentialProblem, type DataAddress } from './DataAddress.js';
import { DataAddressSchema } from './schemas/DataAddress.js';
import { KEY_VARIABLES, keyringFromEnv, type Keyring } from './keys.js';
import { isConfinedPath } from './FileAddress.js';
import { listTransfers, showTransfer, type TransferDetails, type TransferListFilter, type TransferSummary } from './inspect.js';
import { controlPlaneTaskQueue, IN_CLUSTER_SCHEME, transferProcessWorkflowId } from './ids.js';
import { IdSchema } from './schemas/ids.js';
import { AddressSchema, AgreementIdSchema, AssetIdSchema } from './schemas/limits.js';
import { startTransferProcess } from './processStart.js';
import { TransferSettingsOverridesSchema } from './schemas/settings.js';
import {
  completeUpdate,
  edrQuery,
  isPull,
  resumeUpdate,
  startUpdate,
  suspendUpdate,
  terminateUpdate,
  transferProcessStatusQuery,
  TRANSFER_FAILED,
  type TransferProcessInput,
  type TransferProcessResult,
  type TransferProcessStatus,
} from './TransferProcess.js';
import { TransferTypeSchema } from './schemas/TransferProcess.js';
import type { TransferProcessState } from './TransferProcessState.js';
import { parseHttpUrl, UrlPolicyError } from './urlPolicy.js';

/**
 * A counterparty address a transport can reach, checked syntactically (it becomes the
 * FerryCounterparty search attribute, readable by anyone who can list workflows): `temporal://<connectorId>`
 * (in-cluster) or an http(s) DSP URL without credentials. Whether that DSP counterparty is configured
 * only the control plane knows: it refuses an unknown one at its first step (TERMINATED, with the
 * reason), before anything is sent.
 */
export const CounterpartyAddressSchema = AddressSchema.superRefine((address, ctx) => {
  if (address.startsWith(IN_CLUSTER_SCHEME)) {
    const id = address.slice(IN_CLUSTER_SCHEME.length);
    if (!IdSchema.safeParse(id).success) ctx.addIssue({ code: 'custom', message: `in-cluster address ${JSON.stringify(address)} must be temporal://<connectorId>` });
    return;
  }
  try {
    parseHttpUrl(address, 'counterpartyAddress');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `${e instanceof UrlPolicyError ? e.message : 'counterpartyAddress is not a URL'}; expected temporal://<connectorId> or an http(s) DSP URL` });
    return;
  }
  const problem = urlCredentialProblem(address) ?? (new URL(address).search ? 'must not carry a query (it is shown in every workflow list)' : undefined);
  if (problem) ctx.addIssue({ code: 'custom', message: `counterpartyAddress ${problem}` });
});

/** What a user asks for to start a consumer transfer. Checked in full before any workflow starts. */
export const TransferRequestSchema = z
  .object({
    connectorId: IdSchema,
    processId: IdSchema.optional(),
    // a search attribute (FerryCounterparty): readable by anyone who can list workflows
    counterpartyAddress: CounterpartyAddressSchema,
    agreementId: AgreementIdSchema,
    assetId: AssetIdSchema,
    transferType: TransferTypeSchema,
    /** Where a push delivers. A pull has none: the consumer fetches with the EDR the provider sends. */
    dataDestination: DataAddressSchema.optional(),
    dataPlaneId: IdSchema.optional(),
    settings: TransferSettingsOverridesSchema.optional(),
  })
  .strict()
  .superRefine((req, ctx) => {
    const [endpointType] = req.transferType.split('-');
    if (isPull(req.transferType)) {
      if (req.dataDestination) ctx.addIssue({ code: 'custom', path: ['dataDestination'], message: `${req.transferType} takes no dataDestination: the consumer pulls with the EDR the provider sends` });
      return;
    }
    if (!req.dataDestination) {
      ctx.addIssue({ code: 'custom', path: ['dataDestination'], message: `${req.transferType} needs a dataDestination` });
      return;
    }
    if (req.dataDestination.endpointType !== endpointType) {
      ctx.addIssue({ code: 'custom', path: ['dataDestination', 'endpointType'], message: `${req.transferType} needs a ${endpointType} destination, got ${req.dataDestination.endpointType}` });
    }
    if (req.dataDestination.endpointType === 'File' && !isConfinedPath(req.dataDestination.endpoint)) {
      ctx.addIssue({ code: 'custom', path: ['dataDestination', 'endpoint'], message: `File endpoint ${JSON.stringify(req.dataDestination.endpoint)} must be a relative path inside the data plane's file root` });
    }
  });
export type TransferRequest = z.input<typeof TransferRequestSchema>;

export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/** A command the process refused (its update validator said no). */
export class CommandRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandRefusedError';
  }
}

/** A start refused because no worker would run it (nothing was started). */
export class NotReachableError extends CommandRefusedError {
  constructor(message: string) {
    super(message);
    this.name = 'NotReachableError';
  }
}

export interface FerryClientOptions {
  /**
   * Refuse a start unless the connector's control-plane worker (and, in-cluster, the counterparty's)
   * is polling its task queue (default true). Off only for tools that start processes for workers
   * that come later.
   */
  requireLiveWorkers?: boolean;
}

export interface StartedTransfer {
  connectorId: string;
  processId: string;
  workflowId: string;
}

/**
 * The user-facing API: start a transfer, read it, suspend/resume/terminate it. The Temporal client
 * must use ferry's data converter (`new Client({ connection, namespace, dataConverter:
 * ferryDataConverter(keys) })`): it encrypts every payload, credentials in addresses with the rest.
 */
export class FerryClient {
  constructor(
    readonly client: Client,
    private readonly options: FerryClientOptions = {},
  ) {}

  /**
   * Connects with Temporal's conventions (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_*,
   * TEMPORAL_API_KEY, temporal.toml profiles), `explicit` settings winning, and ferry's payload codec
   * with the connector's keys: `keys`, else FERRY_CODEC_KEYS or FERRY_CODEC_KEYS_FILE (or a whole
   * `dataConverter`). Close it when done.
   */
  static async connect(
    opts: ResolveOptions & { keys?: Keyring; dataConverter?: DataConverter; connectTimeout?: string } = {},
  ): Promise<FerryClient & { temporal: TemporalConnection; close(): Promise<void> }> {
    const temporal = resolveTemporalConnection(opts);
    const keys = opts.keys ?? (opts.dataConverter ? undefined : keyringFromEnv(KEY_VARIABLES.codec, opts.env ?? process.env));
    const dataConverter = opts.dataConverter ?? (keys ? ferryDataConverter(keys) : undefined);
    if (!dataConverter) throw new Error(`ferry encrypts every payload: give FerryClient.connect the connector's codec keys (keys, or ${KEY_VARIABLES.codec} / ${KEY_VARIABLES.codec}_FILE)`);
    const connection = await Connection.connect({ ...connectionOptions(temporal), connectTimeout: opts.connectTimeout ?? '10s' });
    const client = new Client({ connection, namespace: temporal.namespace, dataConverter });
    return Object.assign(new FerryClient(client), { temporal, close: () => connection.close() });
  }

  /**
   * Starts a consumer transfer. The same processId twice (even after it ended) reaches the same
   * transfer. Refused with nothing started: an invalid request (InvalidRequestError), a connector
   * (or in-cluster counterparty) whose control-plane worker is not polling (NotReachableError).
   */
  async startTransfer(raw: TransferRequest): Promise<StartedTransfer> {
    const parsed = TransferRequestSchema.safeParse(raw);
    if (!parsed.success) throw new InvalidRequestError(`invalid transfer request:\n${z.prettifyError(parsed.error)}`);
    const req = parsed.data;
    if (this.options.requireLiveWorkers !== false) {
      await this.requireControlPlane(req.connectorId, 'connector');
      if (req.counterpartyAddress.startsWith(IN_CLUSTER_SCHEME)) {
        await this.requireControlPlane(req.counterpartyAddress.slice(IN_CLUSTER_SCHEME.length), 'in-cluster counterparty');
      }
    }
    const processId = req.processId ?? randomUUID();
    const input: TransferProcessInput = {
      role: 'CONSUMER',
      connectorId: req.connectorId,
      processId,
      counterpartyAddress: req.counterpartyAddress,
      agreementId: req.agreementId,
      assetId: req.assetId,
      transferType: req.transferType,
      // the payload codec encrypts it: credentials in the destination never reach the history in plain
      ...(req.dataDestination ? { dataDestination: req.dataDestination } : {}),
      ...(req.dataPlaneId ? { dataPlaneId: req.dataPlaneId } : {}),
      ...(req.settings ? { settings: req.settings } : {}),
    };
    const workflowId = await startTransferProcess(this.client, input);
    return { connectorId: req.connectorId, processId, workflowId };
  }

  /** Refuses unless some worker polls the control-plane task queue of `connectorId` (a typo polls nothing). */
  private async requireControlPlane(connectorId: string, what: string): Promise<void> {
    const taskQueue = controlPlaneTaskQueue(connectorId);
    const res = await this.client.workflowService.describeTaskQueue({
      namespace: this.client.options.namespace,
      taskQueue: { name: taskQueue, kind: 1 /* TASK_QUEUE_KIND_NORMAL */ },
      taskQueueType: 1 /* TASK_QUEUE_TYPE_WORKFLOW */,
    });
    if (!res.pollers?.length) {
      throw new NotReachableError(`${what} ${connectorId} has no live control-plane worker (nothing polls task queue ${taskQueue} in namespace ${this.client.options.namespace}); nothing was started`);
    }
  }

  handle(connectorId: string, processId: string): WorkflowHandle {
    return this.client.workflow.getHandle(transferProcessWorkflowId(connectorId, processId));
  }

  status(connectorId: string, processId: string): Promise<TransferProcessStatus> {
    return this.handle(connectorId, processId).query(transferProcessStatusQuery);
  }

  /** How the transfer ended; a transfer that failed (its workflow failed, see TRANSFER_FAILED) reads as TERMINATED with the reason. */
  async result(connectorId: string, processId: string): Promise<TransferProcessResult> {
    try {
      return (await this.handle(connectorId, processId).result()) as TransferProcessResult;
    } catch (e) {
      if (e instanceof WorkflowFailedError && e.cause instanceof ApplicationFailure && e.cause.type === TRANSFER_FAILED) {
        return { state: 'TERMINATED', reason: e.cause.message };
      }
      throw e;
    }
  }

  suspend(connectorId: string, processId: string, reason?: string): Promise<TransferProcessState> {
    return this.command('suspend', connectorId, processId, (h) => h.executeUpdate(suspendUpdate, { args: [reason ? { reason } : {}] }));
  }

  resume(connectorId: string, processId: string): Promise<TransferProcessState> {
    return this.command('resume', connectorId, processId, (h) => h.executeUpdate(resumeUpdate, { args: [] }));
  }

  terminate(connectorId: string, processId: string, reason?: string): Promise<TransferProcessState> {
    return this.command('terminate', connectorId, processId, (h) => h.executeUpdate(terminateUpdate, { args: [reason ? { reason } : {}] }));
  }

  /** Lets a provider process held in REQUESTED (its agreement's start is `manual`) start. */
  start(connectorId: string, processId: string): Promise<TransferProcessState> {
    return this.command('start', connectorId, processId, (h) => h.executeUpdate(startUpdate, { args: [] }));
  }

  /** Ends a started transfer as done, on either side (a pull's consumer says when it has what it needs). */
  complete(connectorId: string, processId: string): Promise<TransferProcessState> {
    return this.command('complete', connectorId, processId, (h) => h.executeUpdate(completeUpdate, { args: [] }));
  }

  /**
   * A pull's endpoint data reference: the endpoint and the bearer token to fetch the data with.
   * Null until the provider has started the transfer.
   */
  async edr(connectorId: string, processId: string): Promise<DataAddress | null> {
    return (await this.handle(connectorId, processId).query(edrQuery)) ?? null;
  }

  /** Transfers by visibility query on ferry's search attributes, newest first. */
  list(filter: TransferListFilter = {}): Promise<TransferSummary[]> {
    return listTransfers(this.client, filter);
  }

  /** One transfer in full: status and timeline, its DataFlow(s), bytes moved, pending activities and retries. */
  show(connectorId: string, processId: string): Promise<TransferDetails> {
    return showTransfer(this.client, connectorId, processId);
  }

  /** Waits until the process reaches one of `states` (polling its query; bounded by `timeoutMs`). */
  async waitForState(connectorId: string, processId: string, states: TransferProcessState[], timeoutMs = 60_000): Promise<TransferProcessStatus> {
    const deadline = Date.now() + timeoutMs;
    let last: TransferProcessStatus | undefined;
    while (Date.now() < deadline) {
      try {
        last = await this.status(connectorId, processId);
        if (states.includes(last.state)) return last;
      } catch {
        // not started yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`transfer ${processId} did not reach ${states.join('|')} within ${timeoutMs} ms (last: ${last?.state ?? 'unknown'}; ${JSON.stringify(last?.history ?? [])})`);
  }

  private async command(
    verb: string,
    connectorId: string,
    processId: string,
    fn: (h: WorkflowHandle) => Promise<TransferProcessState>,
  ): Promise<TransferProcessState> {
    const handle = this.handle(connectorId, processId);
    try {
      return await fn(handle);
    } catch (e) {
      if (e instanceof WorkflowUpdateFailedError) throw new CommandRefusedError(e.cause?.message ?? e.message);
      // An ended process takes no updates; say why in the same words its validator would.
      const ended = await handle.describe().then((d) => d.status.name !== 'RUNNING', () => false);
      if (ended) {
        const { state } = await handle.query(transferProcessStatusQuery);
        throw new CommandRefusedError(`cannot ${verb} transfer process ${processId} in state ${state}: it has ended`);
      }
      throw e;
    }
  }
}
