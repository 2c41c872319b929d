import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import {
  completeFlowUpdate,
  dataFlowSummary,
  DataFlowStateAttr,
  dataFlowStatusQuery,
  prepareUpdate,
  resumeFlowUpdate,
  startUpdate,
  suspendFlowUpdate,
  terminateFlowUpdate,
  type DataFlowInput,
  type DataFlowPrepareMessage,
  type DataFlowResponse,
  type DataFlowResult,
  type DataFlowStartMessage,
  type DataFlowStatus,
  type ReasonMessage,
} from '../src/DataFlow.js';
import { DATA_FLOW_WORKFLOW, dataFlowWorkflowId } from '../src/ids.js';

/**
 * The data-plane signaling calls as Temporal updates on the DataFlow workflow: one implementation
 * for the control plane's in-cluster path (activities/controlPlane.ts) and for the data plane's DPS
 * HTTP API (worker/dpsDataPlaneApi.ts). `prepare` and `start` create the flow on first use
 * (update-with-start).
 */

export type DataFlowCall =
  | { op: 'prepare'; message: DataFlowPrepareMessage | DataFlowStartMessage }
  | { op: 'start' | 'resume'; message: DataFlowStartMessage }
  | { op: 'suspend' | 'terminate'; message: ReasonMessage }
  | { op: 'complete' };

/** The flow refused the call (its validator or handler threw): the state is unchanged. */
export class DataFlowRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataFlowRefused';
  }
}
/** The flow does not exist, or has ended. */
export class DataFlowGone extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataFlowGone';
  }
}
/** `ifExists: 'fail'`: a prepare/start found the flow already there. */
export class DataFlowExists extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataFlowExists';
  }
}

export interface DataFlowCallOptions {
  /** `use` (the in-cluster path: a repeated call reaches the same flow) or `fail` (DPS: a second start for a process is an error). */
  ifExists?: 'use' | 'fail';
  /** Memo of a flow created by this call (what the DPS API needs to know of it later). */
  memo?: Record<string, unknown>;
}

export const dataFlowWorkflowIdOf = (flow: Pick<DataFlowInput, 'connectorId' | 'processId'>): string => dataFlowWorkflowId(flow.connectorId, flow.processId);

export async function callDataFlow(
  client: Client,
  req: { flow: DataFlowInput; taskQueue: string } & DataFlowCall,
  opts: DataFlowCallOptions = {},
): Promise<DataFlowResponse> {
  const workflowId = dataFlowWorkflowIdOf(req.flow);
  try {
    if (req.op === 'prepare' || req.op === 'start') {
      const args = [req.message] as [DataFlowStartMessage];
      return await client.workflow.executeUpdateWithStart(req.op === 'prepare' ? prepareUpdate : startUpdate, {
        args,
        startWorkflowOperation: new WithStartWorkflowOperation(DATA_FLOW_WORKFLOW, {
          workflowId,
          taskQueue: req.taskQueue,
          args: [req.flow],
          ...dataFlowSummary(req.flow, req.message.transferType),
          typedSearchAttributes: [{ key: DataFlowStateAttr, value: 'RECEIVED' }],
          workflowIdConflictPolicy: opts.ifExists === 'fail' ? 'FAIL' : 'USE_EXISTING',
          // an ended flow is not started again: its resources were released
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          ...(opts.memo ? { memo: opts.memo } : {}),
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
    if (e instanceof WorkflowUpdateFailedError) throw new DataFlowRefused(`data plane refused ${req.op}: ${e.cause?.message ?? e.message}`);
    if (e instanceof WorkflowExecutionAlreadyStartedError && opts.ifExists === 'fail') {
      throw new DataFlowExists(`a data flow for process ${req.flow.processId} exists already`);
    }
    if (e instanceof WorkflowNotFoundError || e instanceof WorkflowExecutionAlreadyStartedError || isClosedError(e)) {
      // A flow that has ended has nothing left to terminate or complete.
      if (req.op === 'terminate' || req.op === 'complete') return { state: (await finalResult(client, workflowId)).state, async: false };
      // A start whose flow already delivered and ended: the call of a task that crashed after it
      // reached the flow, run again (its callbacks came before it); the answer is that it is done.
      // A suspend (or the resume after it) that came after the bytes were verified: answered so.
      if ((req.op === 'start' && opts.ifExists !== 'fail') || req.op === 'suspend' || req.op === 'resume') {
        const ended = await finalResult(client, workflowId);
        if (ended.outcome === 'completed') return { state: ended.state, async: false, completed: true };
      }
      throw new DataFlowGone(`data flow ${workflowId} has ended; cannot ${req.op}`);
    }
    throw e;
  }
}

/** The flow's status, or undefined when there is no such flow. */
export async function dataFlowStatus(client: Client, flow: Pick<DataFlowInput, 'connectorId' | 'processId'>): Promise<DataFlowStatus | undefined> {
  try {
    return await client.workflow.getHandle(dataFlowWorkflowIdOf(flow)).query(dataFlowStatusQuery);
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) return undefined;
    throw e;
  }
}

async function finalResult(client: Client, workflowId: string): Promise<DataFlowResult> {
  try {
    return (await client.workflow.getHandle(workflowId).result()) as DataFlowResult;
  } catch {
    return { state: 'TERMINATED', reason: 'ended' };
  }
}

function isClosedError(e: unknown): boolean {
  return e instanceof Error && /workflow execution already completed|already completed/i.test(e.message);
}
