import { createHash } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { controlPlaneTaskQueue, TRANSFER_PROCESS_WORKFLOW, transferProcessWorkflowId } from './ids.js';
import { transferLinks, transferSearchAttributes, transferSummary, type TransferProcessInput } from './TransferProcess.js';

/**
 * Starts the TransferProcess workflow of `input`, once: a second start of the same process, running
 * or ended, reaches the existing one and never begins a second transfer.
 */
export async function startTransferProcess(client: Client, input: TransferProcessInput, opts: { memo?: ProcessMemo } = {}): Promise<string> {
  const workflowId = transferProcessWorkflowId(input.connectorId, input.processId);
  try {
    await client.workflow.start(TRANSFER_PROCESS_WORKFLOW, {
      workflowId,
      taskQueue: controlPlaneTaskQueue(input.connectorId),
      args: [input],
      ...transferSummary(input),
      typedSearchAttributes: transferSearchAttributes(input),
      memo: { ...transferLinks(input), ...opts.memo },
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
    });
  } catch (e) {
    if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e; // it ran already
  }
  return workflowId;
}

/**
 * The memo of a provider process, set at its start and never changed: who may touch it (the
 * authenticated counterparty's id) and a keyed digest of the request that created it (a re-sent
 * request with other parameters is a conflict, not the same request).
 */
export interface ProcessMemo {
  counterpartyId?: string;
  requestDigest?: string;
}

/** The provider's pid for a consumer's request: the same request (consumer, consumerPid) always maps to the same process. */
export const providerPidFor = (consumer: string, consumerPid: string): string =>
  `p-${createHash('sha256').update(`${consumer}\n${consumerPid}`).digest('hex').slice(0, 32)}`;
