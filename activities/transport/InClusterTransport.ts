import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { dspStateOf, FINAL_STATE_OF, type DspState, type ProcessMessage, type TransferRequestMessage } from '../../src/dsp.js';
import { controlPlaneTaskQueue, IN_CLUSTER_SCHEME, TRANSFER_PROCESS_WORKFLOW, transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor, type ProcessMemo } from '../../src/processStart.js';
import {
  counterpartyMessageUpdate,
  requestUpdate,
  transferLinks,
  transferProcessStatusQuery,
  transferSearchAttributes,
  transferSummary,
  type TransferProcessInput,
} from '../../src/TransferProcess.js';
import { TransferProcessInputSchema } from '../../src/schemas/TransferProcess.js';
import { CounterpartyRejected, type CounterpartyTransport, type SendOptions } from '../../src/Transport.js';

/**
 * Two connectors on one Temporal cluster: a message is delivered straight to the counterparty's
 * TransferProcess workflow. A request is an update-with-start, so the provider's own worker admits
 * it (or refuses) before the consumer hears back; every other message is an update whose
 * validator accepts or refuses at once. Each message's id is the update id: a retried delivery
 * that already got through is answered with the first outcome.
 */
export class InClusterTransport implements CounterpartyTransport {
  readonly name = 'in-cluster';

  constructor(private readonly client: Client) {}

  canReach(address: string): boolean {
    return address.startsWith(IN_CLUSTER_SCHEME);
  }

  async requestTransfer(address: string, message: TransferRequestMessage, opts: SendOptions = {}): Promise<{ providerPid: string }> {
    const provider = connectorOf(address);
    if (!message.assetId) throw new CounterpartyRejected('an in-cluster transfer request must name its asset');
    // The same consumer process always maps to the same provider process: a re-sent request is idempotent.
    const providerPid = providerPidFor(message.callbackAddress, message.consumerPid);
    // The consumer connector is the counterparty; the provider's own worker admits the request
    // against its agreements as the first step of the process (no config of the provider is here).
    const counterpartyId = connectorOf(message.callbackAddress);
    const input: TransferProcessInput = {
      role: 'PROVIDER',
      connectorId: provider,
      processId: providerPid,
      counterpartyPid: message.consumerPid,
      counterpartyAddress: message.callbackAddress,
      counterpartyId,
      agreementId: message.agreementId,
      assetId: message.assetId,
      transferType: message.format as TransferProcessInput['transferType'],
      ...(message.dataAddress ? { dataDestination: message.dataAddress } : {}),
    };
    // the provider's boundary: an input its workflow would refuse is refused here, once, not started
    const valid = TransferProcessInputSchema.safeParse(input);
    if (!valid.success) throw new CounterpartyRejected(`invalid transfer request: ${valid.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const workflowId = transferProcessWorkflowId(provider, providerPid);
    const memo: ProcessMemo = { counterpartyId };
    try {
      await this.client.workflow.executeUpdateWithStart(requestUpdate, {
        args: [message],
        ...(opts.messageId ? { updateId: opts.messageId } : {}),
        startWorkflowOperation: new WithStartWorkflowOperation(TRANSFER_PROCESS_WORKFLOW, {
          workflowId,
          taskQueue: controlPlaneTaskQueue(provider),
          args: [input],
          ...transferSummary(input),
          typedSearchAttributes: transferSearchAttributes(input),
          memo: { ...transferLinks(input), ...memo },
          workflowIdConflictPolicy: 'USE_EXISTING',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
        }),
      });
    } catch (e) {
      if (e instanceof WorkflowUpdateFailedError) throw new CounterpartyRejected(e.cause?.message ?? e.message);
      if (e instanceof WorkflowExecutionAlreadyStartedError) {
        // the provider's process has ended: tell the consumer how
        const state = await this.endedState(this.client.workflow.getHandle(workflowId));
        throw new CounterpartyRejected(`provider process ${providerPid} has ended ${state ?? ''}`.trim());
      }
      throw e;
    }
    return { providerPid };
  }

  async send(address: string, receiverPid: string, message: ProcessMessage, opts: SendOptions = {}): Promise<void> {
    const handle = this.client.workflow.getHandle(transferProcessWorkflowId(connectorOf(address), receiverPid));
    try {
      await handle.executeUpdate(counterpartyMessageUpdate, { args: [message], ...(opts.messageId ? { updateId: opts.messageId } : {}) });
    } catch (e) {
      if (e instanceof WorkflowUpdateFailedError) throw new CounterpartyRejected(e.cause?.message ?? e.message);
      if (e instanceof WorkflowNotFoundError || (e instanceof Error && /already completed/i.test(e.message))) {
        // ended: a message that would have ended it the same way is a repeat, and done
        const state = await this.endedState(handle);
        if (state && FINAL_STATE_OF[message['@type']] === state) return;
        throw new CounterpartyRejected(state ? `counterparty process ${receiverPid} has ended ${state}` : `counterparty process ${receiverPid} not found`);
      }
      throw e;
    }
  }

  async state(address: string, pid: string): Promise<DspState> {
    const status = await this.client.workflow.getHandle(transferProcessWorkflowId(connectorOf(address), pid)).query(transferProcessStatusQuery);
    return dspStateOf(status);
  }

  private async endedState(handle: WorkflowHandle): Promise<DspState | undefined> {
    try {
      return dspStateOf(await handle.query(transferProcessStatusQuery));
    } catch {
      return undefined;
    }
  }
}

function connectorOf(address: string): string {
  const id = address.slice(IN_CLUSTER_SCHEME.length).replace(/\/+$/, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) throw new CounterpartyRejected(`bad in-cluster address ${address}`);
  return id;
}
