import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { optionalTsToMs } from '@temporalio/common/lib/time.js';
import { z } from 'zod';
import { dataFlowStatusQuery, type DataFlowStatus } from './DataFlow.js';
import { controlPlaneTaskQueue, dataFlowWorkflowId, IN_CLUSTER_SCHEME, TRANSFER_PROCESS_WORKFLOW, transferProcessWorkflowId } from './ids.js';
import {
  AgreementAttr,
  AssetAttr,
  CounterpartyAttr,
  DataPlaneAttr,
  TransferRoleAttr,
  TransferStateAttr,
  TransferTypeAttr,
  transferProcessStatusQuery,
  type TransferProcessStatus,
} from './TransferProcess.js';

/**
 * Reading transfers for operators: list them through visibility (search attributes), show one
 * with its DataFlow, bytes moved and pending activities. Used by `FerryClient` and the CLI.
 */

const CONTROL_PLANE_QUEUE_PREFIX = controlPlaneTaskQueue('');
const FINAL_STATES = new Set(['COMPLETED', 'TERMINATED']);

/** A filter value goes into a visibility query: keep it to characters that need no escaping. */
const FilterValue = z.string().min(1).regex(/^[^"'\\\n]*$/, 'filter values may not contain quotes, backslashes or newlines');

export const TransferListFilterSchema = z
  .object({
    /** Only this connector's processes. */
    connectorId: FilterValue.optional(),
    /** TransferProcess states (any of). */
    state: z.array(FilterValue).min(1).optional(),
    role: z.enum(['CONSUMER', 'PROVIDER']).optional(),
    /** Counterparty address, e.g. temporal://provider or https://…/dsp. */
    counterparty: FilterValue.optional(),
    /** Transfer type, e.g. File-PUSH. */
    type: FilterValue.optional(),
    agreement: FilterValue.optional(),
    asset: FilterValue.optional(),
    /** Running or ended workflows only. */
    status: z.enum(['running', 'closed']).optional(),
    /** At most this many, newest first (default 100). */
    limit: z.number().int().positive().max(10_000).default(100),
  })
  .strict();
export type TransferListFilter = z.input<typeof TransferListFilterSchema>;

export interface TransferSummary {
  connectorId: string;
  processId: string;
  workflowId: string;
  runId: string;
  /** The TransferProcess state as its search attribute says. */
  state?: string;
  role?: string;
  type?: string;
  counterparty?: string;
  agreement?: string;
  asset?: string;
  dataPlane?: string;
  /** Temporal's execution status: RUNNING, COMPLETED, FAILED, TERMINATED, … */
  executionStatus: string;
  startTime: string;
  closeTime?: string;
}

const eq = (attr: string, value: string) => `${attr} = "${value}"`;

/** The visibility query of a filter (exported for tests and for pasting into the Web UI). */
export function listQuery(raw: TransferListFilter): string {
  const f = TransferListFilterSchema.parse(raw);
  // the state-table workflows, and those still running the frozen earlier code
  const clauses = [`WorkflowType IN ("${TRANSFER_PROCESS_WORKFLOW}", "transferProcessWorkflow")`];
  if (f.connectorId) clauses.push(eq('TaskQueue', controlPlaneTaskQueue(f.connectorId)));
  if (f.state) clauses.push(`${TransferStateAttr.name} IN (${f.state.map((s) => `"${s}"`).join(', ')})`);
  if (f.role) clauses.push(eq(TransferRoleAttr.name, f.role));
  if (f.counterparty) clauses.push(eq(CounterpartyAttr.name, f.counterparty));
  if (f.type) clauses.push(eq(TransferTypeAttr.name, f.type));
  if (f.agreement) clauses.push(eq(AgreementAttr.name, f.agreement));
  if (f.asset) clauses.push(eq(AssetAttr.name, f.asset));
  if (f.status === 'running') clauses.push(`ExecutionStatus = "Running"`);
  if (f.status === 'closed') clauses.push(`ExecutionStatus != "Running"`);
  return clauses.join(' AND ');
}

export async function listTransfers(client: Client, raw: TransferListFilter): Promise<TransferSummary[]> {
  const f = TransferListFilterSchema.parse(raw);
  const out: TransferSummary[] = [];
  for await (const wf of client.workflow.list({ query: listQuery(f), pageSize: Math.min(f.limit, 1000) })) {
    const connectorId = wf.taskQueue.startsWith(CONTROL_PLANE_QUEUE_PREFIX) ? wf.taskQueue.slice(CONTROL_PLANE_QUEUE_PREFIX.length) : '';
    const prefix = transferProcessWorkflowId(connectorId, '');
    const attrs = wf.typedSearchAttributes;
    const get = (key: Parameters<typeof attrs.get>[0]) => attrs.get(key) as string | undefined;
    const summary: TransferSummary = {
      connectorId,
      processId: wf.workflowId.startsWith(prefix) ? wf.workflowId.slice(prefix.length) : wf.workflowId,
      workflowId: wf.workflowId,
      runId: wf.runId,
      executionStatus: wf.status.name,
      startTime: wf.startTime.toISOString(),
      ...(wf.closeTime ? { closeTime: wf.closeTime.toISOString() } : {}),
    };
    for (const [field, key] of [
      ['state', TransferStateAttr],
      ['role', TransferRoleAttr],
      ['type', TransferTypeAttr],
      ['counterparty', CounterpartyAttr],
      ['agreement', AgreementAttr],
      ['asset', AssetAttr],
      ['dataPlane', DataPlaneAttr],
    ] as const) {
      const value = get(key);
      if (value !== undefined) summary[field] = value;
    }
    out.push(summary);
    if (out.length >= f.limit) break;
  }
  return out;
}

export interface PendingActivity {
  workflowId: string;
  activityType: string;
  state: string;
  attempt: number;
  maximumAttempts?: number;
  lastFailure?: string;
  lastHeartbeatTime?: string;
  nextAttemptScheduleTime?: string;
  /** Decoded heartbeat details (a transfer heartbeats `{ offset }`). */
  heartbeat?: unknown;
}

export interface ExecutionInfo {
  workflowId: string;
  runId: string;
  status: string;
  startTime: string;
  closeTime?: string;
  historyLength: number;
}

export interface TransferProgress {
  /** Bytes moved so far (or in all, once the flow finished). */
  bytes: number;
  /** The size of the whole, when known. */
  totalBytes?: number;
  /** Where the number comes from: the DataFlow's status (finished) or the running transfer activity's heartbeat. */
  from: 'dataFlow' | 'heartbeat';
  /** The flow that moves the bytes (the provider's, for a push between two connectors of this cluster). */
  flowWorkflowId: string;
}

export interface TransferDetails {
  status: TransferProcessStatus;
  execution: ExecutionInfo;
  dataFlow?: { status?: DataFlowStatus; execution?: ExecutionInfo; error?: string };
  /** The other side's DataFlow, when the counterparty is in this cluster and namespace (temporal://…). */
  counterpartyDataFlow?: { status?: DataFlowStatus; execution?: ExecutionInfo; error?: string };
  progress?: TransferProgress;
  pendingActivities: PendingActivity[];
  /** True once the process reached COMPLETED or TERMINATED, or its workflow closed. */
  final: boolean;
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

function executionInfo(d: WorkflowExecutionDescription): ExecutionInfo {
  return {
    workflowId: d.workflowId,
    runId: d.runId,
    status: d.status.name,
    startTime: d.startTime.toISOString(),
    ...(d.closeTime ? { closeTime: d.closeTime.toISOString() } : {}),
    historyLength: d.historyLength,
  };
}

async function pendingActivities(client: Client, d: WorkflowExecutionDescription): Promise<PendingActivity[]> {
  const out: PendingActivity[] = [];
  for (const a of d.raw.pendingActivities ?? []) {
    let heartbeat: unknown;
    if (a.heartbeatDetails?.payloads?.length) {
      heartbeat = await decodeFromPayloadsAtIndex(client.options.loadedDataConverter, 0, a.heartbeatDetails.payloads).catch(() => undefined);
    }
    const stateName = typeof a.state === 'number' ? (['UNSPECIFIED', 'SCHEDULED', 'STARTED', 'CANCEL_REQUESTED', 'PAUSED', 'PAUSE_REQUESTED'][a.state] ?? String(a.state)) : String(a.state ?? '');
    const entry: PendingActivity = { workflowId: d.workflowId, activityType: a.activityType?.name ?? 'unknown', state: stateName.replace(/^PENDING_ACTIVITY_STATE_/, ''), attempt: a.attempt ?? 1 };
    if (a.maximumAttempts) entry.maximumAttempts = a.maximumAttempts;
    if (a.lastFailure?.message) entry.lastFailure = a.lastFailure.message;
    const hb = iso(optionalTsToMs(a.lastHeartbeatTime));
    if (hb) entry.lastHeartbeatTime = hb;
    const next = iso(optionalTsToMs(a.nextAttemptScheduleTime));
    if (next) entry.nextAttemptScheduleTime = next;
    if (heartbeat !== undefined) entry.heartbeat = heartbeat;
    out.push(entry);
  }
  return out;
}

async function readFlow(client: Client, workflowId: string): Promise<{ part: NonNullable<TransferDetails['dataFlow']>; pending: PendingActivity[] } | undefined> {
  const handle = client.workflow.getHandle(workflowId);
  let description: WorkflowExecutionDescription;
  try {
    description = await handle.describe();
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) return undefined;
    return { part: { error: (e as Error).message }, pending: [] };
  }
  const part: NonNullable<TransferDetails['dataFlow']> = { execution: executionInfo(description) };
  try {
    part.status = await handle.query(dataFlowStatusQuery);
  } catch (e) {
    part.error = `no status: ${(e as Error).message}`;
  }
  return { part, pending: await pendingActivities(client, description) };
}

function progressOf(flows: { workflowId: string; status?: DataFlowStatus; pending: PendingActivity[] }[]): TransferProgress | undefined {
  for (const flow of flows) {
    const running = flow.pending.find((a) => a.activityType === 'transfer');
    const hb = running?.heartbeat as { offset?: number; total?: number; totalBytes?: number } | undefined;
    if (hb && typeof hb.offset === 'number') {
      const total = hb.total ?? hb.totalBytes;
      return { bytes: hb.offset, ...(typeof total === 'number' ? { totalBytes: total } : {}), from: 'heartbeat', flowWorkflowId: flow.workflowId };
    }
    if (typeof flow.status?.bytesTransferred === 'number') {
      return { bytes: flow.status.bytesTransferred, totalBytes: flow.status.bytesTransferred, from: 'dataFlow', flowWorkflowId: flow.workflowId };
    }
  }
  return undefined;
}

/** Everything about one transfer; throws WorkflowNotFoundError when there is no such process. */
export async function showTransfer(client: Client, connectorId: string, processId: string): Promise<TransferDetails> {
  const handle = client.workflow.getHandle(transferProcessWorkflowId(connectorId, processId));
  const description = await handle.describe();
  const status = await handle.query(transferProcessStatusQuery);
  const pending = await pendingActivities(client, description);
  const details: TransferDetails = {
    status,
    execution: executionInfo(description),
    pendingActivities: pending,
    final: FINAL_STATES.has(status.state) || description.status.name !== 'RUNNING',
  };
  const flows: { workflowId: string; status?: DataFlowStatus; pending: PendingActivity[] }[] = [];
  const own = await readFlow(client, dataFlowWorkflowId(connectorId, processId));
  if (own) {
    details.dataFlow = own.part;
    details.pendingActivities.push(...own.pending);
    flows.push({ workflowId: dataFlowWorkflowId(connectorId, processId), ...(own.part.status ? { status: own.part.status } : {}), pending: own.pending });
  }
  if (status.counterpartyAddress.startsWith(IN_CLUSTER_SCHEME) && status.counterpartyPid) {
    const counterparty = status.counterpartyAddress.slice(IN_CLUSTER_SCHEME.length);
    const theirs = await readFlow(client, dataFlowWorkflowId(counterparty, status.counterpartyPid));
    if (theirs) {
      details.counterpartyDataFlow = theirs.part;
      details.pendingActivities.push(...theirs.pending);
      flows.push({ workflowId: dataFlowWorkflowId(counterparty, status.counterpartyPid), ...(theirs.part.status ? { status: theirs.part.status } : {}), pending: theirs.pending });
    }
  }
  // the provider's flow moves a push's bytes: prefer it when it reports more
  const progress = progressOf(flows.filter((f) => f.status?.role === 'PROVIDER' || f.pending.some((a) => a.activityType === 'transfer'))) ?? progressOf(flows);
  if (progress) details.progress = progress;
  return details;
}
