import type { Counterparty, DspConfig } from '../../src/config.js';
import type { DataAddress } from '../../src/DataAddress.js';
import {
  DSP_STATES,
  isUnder,
  MESSAGE_ID_HEADER,
  pathOfMessage,
  toDspDataAddress,
  trimSlash,
  type DspState,
  type DspTransferError,
  type DspTransferProcess,
  type ProcessMessage,
  type TransferRequestMessage,
} from '../../src/dsp.js';
import { CounterpartyRejected, type CounterpartyTransport, type SendOptions } from '../../src/Transport.js';

/**
 * The Dataspace Protocol HTTPS binding, outbound: each message is one POST to the counterparty's
 * DSP endpoint with our bearer token. A 4xx answer is the counterparty's final word
 * (CounterpartyRejected); network errors and 5xx are thrown as they are, for the activity to retry.
 */
export class HttpDspTransport implements CounterpartyTransport {
  readonly name = 'dsp-https';

  constructor(private readonly dsp: DspConfig & { publicUrl: string }) {}

  canReach(address: string): boolean {
    return /^https?:\/\//.test(address);
  }

  async requestTransfer(address: string, message: TransferRequestMessage, opts: SendOptions = {}): Promise<{ providerPid: string }> {
    // Over HTTPS the counterparty calls us back at our public DSP URL, and the agreement names the asset.
    const { assetId: _inClusterOnly, ...dspMessage } = { ...this.onWire(message), callbackAddress: this.dsp.publicUrl };
    const ack = (await this.post(address, '/transfers/request', dspMessage, opts)) as Partial<DspTransferProcess>;
    if (ack['@type'] !== 'TransferProcess' || typeof ack.providerPid !== 'string' || ack.consumerPid !== message.consumerPid) {
      throw new CounterpartyRejected(`counterparty answered the transfer request with something that is not its TransferProcess`);
    }
    return { providerPid: ack.providerPid };
  }

  async send(address: string, receiverPid: string, message: ProcessMessage, opts: SendOptions = {}): Promise<void> {
    await this.post(address, `/transfers/${encodeURIComponent(receiverPid)}/${pathOfMessage(message['@type'])}`, this.onWire(message), opts);
  }

  async state(address: string, pid: string): Promise<DspState> {
    const counterparty = this.counterpartyAt(address);
    const res = await fetch(`${trimSlash(address)}/transfers/${encodeURIComponent(pid)}`, {
      headers: { authorization: `Bearer ${counterparty.outboundToken}`, accept: 'application/json' },
      signal: AbortSignal.timeout(this.dsp.requestTimeoutMs),
      redirect: 'error',
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${counterparty.id} answered ${res.status} to GET /transfers/${pid}`);
    const state = (JSON.parse(text) as Partial<DspTransferProcess>).state;
    if (!state || !(DSP_STATES as readonly string[]).includes(state)) throw new Error(`${counterparty.id} answered GET /transfers/${pid} without a DSP state`);
    return state;
  }

  /** The message as DSP puts it on the wire (the address in DSP's shape). */
  private onWire<M extends object>(message: M): M {
    const address = (message as { dataAddress?: DataAddress }).dataAddress;
    return address ? { ...message, dataAddress: toDspDataAddress(address) } : message;
  }

  /** Any 2xx is an acknowledgement (the binding names 201 for a request, 200 otherwise; peers vary). */
  private async post(address: string, path: string, body: unknown, opts: SendOptions): Promise<unknown> {
    const counterparty = this.counterpartyAt(address);
    const url = `${trimSlash(address)}${path}`;
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${counterparty.outboundToken}`,
        ...(opts.messageId ? { [MESSAGE_ID_HEADER]: opts.messageId } : {}),
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.dsp.requestTimeoutMs),
      redirect: 'error',
    });
    const text = await res.text();
    if (res.ok) return text ? JSON.parse(text) : undefined;
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
      throw new CounterpartyRejected(`${counterparty.id} answered ${res.status} to POST ${path}: ${describeError(text)}`);
    }
    throw new Error(`${counterparty.id} answered ${res.status} to POST ${path}`);
  }

  /** The configured counterparty whose DSP address this is (its token goes with the message). */
  private counterpartyAt(address: string): Counterparty {
    const found = this.dsp.counterparties.find((c) => isUnder(address, c.address));
    if (!found) throw new CounterpartyRejected(`no counterparty configured for ${address}`);
    return found;
  }
}

function describeError(text: string): string {
  try {
    const err = JSON.parse(text) as Partial<DspTransferError>;
    if (err['@type'] === 'TransferError') return [err.code, ...(err.reason ?? [])].filter(Boolean).join(': ');
  } catch {
    // not JSON
  }
  return text.slice(0, 200) || 'no body';
}
