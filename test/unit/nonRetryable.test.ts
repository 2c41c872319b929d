import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlPlaneActivities } from '../../activities/controlPlane.js';
import { createDataPlaneActivities } from '../../activities/dataPlane.js';
import { HttpDspTransport } from '../../activities/transport/HttpDspTransport.js';
import { InClusterTransport } from '../../activities/transport/InClusterTransport.js';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema, DspConfigSchema } from '../../src/config.js';
import { DSP_CONTEXT } from '../../src/dsp.js';
import { CounterpartyBusy, CounterpartyRejected } from '../../src/Transport.js';

/** Deterministic refusals fail once (non-retryable); only what a retry can fix is retried. */
const dead = () => new Client({ connection: Connection.lazy({ address: '127.0.0.1:1', connectTimeout: '1s' }) });
let peer: Server;
let peerUrl: string;
let answer: { status: number; body: string; headers?: Record<string, string> } = { status: 200, body: '<html>ok</html>' };

beforeAll(async () => {
  peer = createServer((req, res) => req.resume().on('end', () => res.writeHead(answer.status, { 'content-type': 'text/html', ...answer.headers }).end(answer.body)));
  await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
  peerUrl = `http://127.0.0.1:${(peer.address() as AddressInfo).port}/dsp`;
});
afterAll(() => peer?.close());

describe('non-retryable refusals', () => {
  it('a 2xx with a body that is not JSON acknowledges a message (no resend); a request acknowledged so is refused once', async () => {
    const transport = new HttpDspTransport({ ...DspConfigSchema.parse({ counterparties: [{ id: 'p', address: peerUrl, inboundToken: 'x'.repeat(16), outboundToken: 'y'.repeat(16) }] }), publicUrl: 'http://127.0.0.1:9/dsp' });
    answer = { status: 200, body: '<html>ok</html>' };
    await expect(transport.send(peerUrl, 'c1', { '@context': [DSP_CONTEXT], '@type': 'TransferCompletionMessage', consumerPid: 'c1', providerPid: 'p1' })).resolves.toBeUndefined();
    answer = { status: 201, body: '<html>created</html>' };
    await expect(
      transport.requestTransfer(peerUrl, { '@context': [DSP_CONTEXT], '@type': 'TransferRequestMessage', consumerPid: 'c1', agreementId: 'a', format: 'File-PUSH', callbackAddress: 'x' }),
    ).rejects.toBeInstanceOf(CounterpartyRejected);
    answer = { status: 302, body: '' };
    await expect(transport.send(peerUrl, 'c1', { '@context': [DSP_CONTEXT], '@type': 'TransferCompletionMessage', consumerPid: 'c1', providerPid: 'p1' })).rejects.toBeInstanceOf(CounterpartyRejected);
  });

  it('a busy counterparty (429 or 503 with Retry-After) is asked again after the time it names, not the backoff\'s guess', async () => {
    const dsp = DspConfigSchema.parse({ counterparties: [{ id: 'p', address: peerUrl, inboundToken: 'x'.repeat(16), outboundToken: 'y'.repeat(16) }] });
    const transport = new HttpDspTransport({ ...dsp, publicUrl: 'http://127.0.0.1:9/dsp' });
    const config = ControlPlaneConfigSchema.parse({ connectorId: 'c', dataPlanes: [{ id: 'dp', transferTypes: ['File-PUSH'] }], dsp });
    const acts = createControlPlaneActivities({ config, client: dead(), transports: [transport] });
    const send = () =>
      new MockActivityEnvironment().run(acts.sendToCounterparty, { address: peerUrl, receiverPid: 'c1', message: { '@context': [DSP_CONTEXT], '@type': 'TransferCompletionMessage' as const, consumerPid: 'c1', providerPid: 'p1' } }).catch((e: unknown) => e);
    answer = { status: 429, body: '{}', headers: { 'retry-after': '7' } };
    expect(await send()).toMatchObject({ type: 'CounterpartyBusy', nonRetryable: false, nextRetryDelay: 7000 });
    answer = { status: 503, body: '', headers: { 'retry-after': '3600' } };
    expect(await send()).toMatchObject({ type: 'CounterpartyBusy', nextRetryDelay: 60_000 }); // bounded: a minute at most
    // without Retry-After: the usual backoff (a plain retryable error)
    answer = { status: 429, body: '{}' };
    const plain = await send();
    expect(plain).toBeInstanceOf(Error);
    expect(plain).not.toMatchObject({ type: 'CounterpartyBusy' });
  });

  it('a busy counterparty asked for a process\'s state (the watchdog) is busy, not silent: CounterpartyBusy, whether or not it names a time', async () => {
    const transport = new HttpDspTransport({ ...DspConfigSchema.parse({ counterparties: [{ id: 'p', address: peerUrl, inboundToken: 'x'.repeat(16), outboundToken: 'y'.repeat(16) }] }), publicUrl: 'http://127.0.0.1:9/dsp' });
    for (const a of [{ status: 429, body: '{}' }, { status: 503, body: '', headers: { 'retry-after': '5' } }]) {
      answer = a;
      await expect(transport.state(peerUrl, 'p1')).rejects.toBeInstanceOf(CounterpartyBusy);
    }
    answer = { status: 500, body: '' };
    const failed = await transport.state(peerUrl, 'p1').catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expect(failed).not.toBeInstanceOf(CounterpartyBusy);
  });

  it('an in-cluster request the provider workflow would refuse is refused once, nothing started', async () => {
    const transport = new InClusterTransport(dead());
    await expect(
      transport.requestTransfer('temporal://provider', {
        '@context': [DSP_CONTEXT],
        '@type': 'TransferRequestMessage',
        consumerPid: 'c1',
        agreementId: 'a'.repeat(300),
        assetId: 'a',
        format: 'File-PUSH',
        callbackAddress: 'temporal://consumer',
      }),
    ).rejects.toBeInstanceOf(CounterpartyRejected);
  });
});
