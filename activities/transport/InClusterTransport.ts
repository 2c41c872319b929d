import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import type { ProcessMessage, TransferRequestMessage } from '../../src/dsp.js';
import { IN_CLUSTER_SCHEME, transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor, startTransferProcess } from '../../src/processStart.js';
import { counterpartyMessageUpdate, TransferProcessInputSchema, type TransferProcessInput } from '../../src/TransferProcess.js';
import { CounterpartyRejected, type CounterpartyTransport } from '../../src/Transport.js';

/**
 * Two connectors on one Temporal cluster: a message is delivered straight to the counterparty's
 * TransferProcess workflow (a request starts it; everything else is an update whose validator
 * accepts or refuses at once).
 */
export class InClusterTransport implements CounterpartyTransport {
  readonly name = 'in-cluster';

  constructor(private readonly client: Client) {}

  canReach(address: string): boolean {
    return address.startsWith(IN_CLUSTER_SCHEME);
  }

  async requestTransfer(address: string, message: TransferRequestMessage): Promise<{ providerPid: string }> {
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
    await startTransferProcess(this.client, input, { memo: { counterpartyId } });
    return { providerPid };
  }

  async send(address: string, receiverPid: string, message: ProcessMessage): Promise<void> {
    const handle = this.client.workflow.getHandle(transferProcessWorkflowId(connectorOf(address), receiverPid));
    try {
      await handle.executeUpdate(counterpartyMessageUpdate, { args: [message] });
    } catch (e) {
      if (e instanceof WorkflowUpdateFailedError) throw new CounterpartyRejected(e.cause?.message ?? e.message);
      if (e instanceof WorkflowNotFoundError) throw new CounterpartyRejected(`counterparty process ${receiverPid} not found`);
      throw e;
    }
  }
}

function connectorOf(address: string): string {
  const id = address.slice(IN_CLUSTER_SCHEME.length).replace(/\/+$/, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) throw new CounterpartyRejected(`bad in-cluster address ${address}`);
  return id;
}
