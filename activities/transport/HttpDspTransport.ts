import type { Counterparty, DspConfig } from '../../src/config.js';
import type { DataAddress } from '../../src/DataAddress.js';
import {
  DSP_STATES,
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
import { counterpartyOwning, isUnder } from '../../src/urlPolicy.js';
import { CounterpartyBusy, CounterpartyRejected, retryAfterMs, type CounterpartyTransport, type SendOptions } from '../../src/Transport.js';
import { UrlPolicyError } from '../../src/urlPolicy.js';
import { policyFetch } from '../net/policyFetch.js';

/**
 * The Dataspace Protocol HTTPS binding, outbound: each message is one POST to the counterparty's
 * DSP endpoint with our bearer token. A 4xx answer is the counterparty's final word
 * (CounterpartyRejected); network errors and 5xx are thrown as they are, for the activity to retry.
 * Requests go only under the counterparty's configured address (parsed URLs, whole segments) and
 * never follow a redirect (a redirect is refused for good).
 */
export class HttpDspTransport implements CounterpartyTransport {
  readonly name = 'dsp-https';

  constructor(private readonly dsp: DspConfig & { publicUrl: string }) {}

  canReach(address: string): boolean {
    return /^https?:\/\//i.test(address);
  }

  async requestTransfer(address: string, message: TransferRequestMessage, opts: SendOptions = {}): Promise<{ providerPid: string }> {
    // Over HTTPS the counterparty calls us back at our public DSP URL, and the agreement names the asset.
    const { assetId: _inClusterOnly, ...dspMessage } = { ...this.onWire(message), callbackAddress: this.dsp.publicUrl };
    const text = await this.post(address, '/transfers/request', dspMessage, opts);
    let ack: Partial<DspTransferProcess> = {};
    try {
      ack = (JSON.parse(text) ?? {}) as Partial<DspTransferProcess>;
    } catch {
      // not JSON: not a TransferProcess either (below), and no retry makes it one
    }
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
    const res = await this.fetchUnder(counterparty, `${trimSlash(address)}/transfers/${encodeURIComponent(pid)}`, {
      headers: { authorization: `Bearer ${counterparty.outboundToken}`, accept: 'application/json' },
      signal: AbortSignal.timeout(this.dsp.requestTimeoutMs),
    });
    const text = await res.text();
    // busy is alive: the watchdog must not take a throttled counterparty for a lost one
    if (res.status === 429 || res.status === 503) throw new CounterpartyBusy(`${counterparty.id} answered ${res.status} to GET /transfers/${pid}`, retryAfterMs(res.headers.get('retry-after')) ?? 1_000);
    if (!res.ok) throw new Error(`${counterparty.id} answered ${res.status} to GET /transfers/${pid}`);
    let state: string | undefined;
    try {
      state = (JSON.parse(text) as Partial<DspTransferProcess>).state;
    } catch {
      // not JSON: no state (below)
    }
    if (!state || !(DSP_STATES as readonly string[]).includes(state)) throw new Error(`${counterparty.id} answered GET /transfers/${pid} without a DSP state`);
    return state as DspState;
  }

  /** The message as DSP puts it on the wire (the address in DSP's shape). */
  private onWire<M extends object>(message: M): M {
    const address = (message as { dataAddress?: DataAddress }).dataAddress;
    return address ? { ...message, dataAddress: toDspDataAddress(address) } : message;
  }

  /** A request under the counterparty's configured address (the allowlist: its hosts are the operator's choice); never a redirect. */
  private async fetchUnder(counterparty: Counterparty, url: string, init: Parameters<typeof policyFetch>[1]) {
    try {
      return await policyFetch(url, init, { allowedUrls: [counterparty.address] }, { what: `${counterparty.id}'s DSP endpoint` });
    } catch (e) {
      if (e instanceof UrlPolicyError) throw new CounterpartyRejected(e.message);
      throw e;
    }
  }

  /** Any 2xx is an acknowledgement (the binding names 201 for a request, 200 otherwise; peers vary); answers its body. */
  private async post(address: string, path: string, body: unknown, opts: SendOptions): Promise<string> {
    const counterparty = this.counterpartyAt(address, opts.counterpartyId);
    const res = await this.fetchUnder(counterparty, `${trimSlash(address)}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${counterparty.outboundToken}`,
        ...(opts.messageId ? { [MESSAGE_ID_HEADER]: opts.messageId } : {}),
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.dsp.requestTimeoutMs),
    });
    const text = await res.text();
    // a message's 2xx body means nothing (peers send none, JSON or HTML): never a reason to send it again
    if (res.ok) return text;
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
      throw new CounterpartyRejected(`${counterparty.id} answered ${res.status} to POST ${path}: ${describeError(text)}`);
    }
    const wait = res.status === 429 || res.status === 503 ? retryAfterMs(res.headers.get('retry-after')) : undefined;
    if (wait !== undefined) throw new CounterpartyBusy(`${counterparty.id} answered ${res.status} to POST ${path} (retry after ${wait} ms)`, wait);
    throw new Error(`${counterparty.id} answered ${res.status} to POST ${path}`);
  }

  /**
   * Whose token goes with a message: the process's bound counterparty when known, else the configured
   * counterparty owning the address (the most specific base it lies under).
   */
  private counterpartyAt(address: string, counterpartyId?: string): Counterparty {
    if (counterpartyId) {
      const bound = this.dsp.counterparties.find((c) => c.id === counterpartyId);
      if (!bound || !isUnder(address, bound.address)) throw new CounterpartyRejected(`counterparty ${counterpartyId} is not configured for ${address}`);
      return bound;
    }
    const found = counterpartyOwning(this.dsp.counterparties, address);
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
