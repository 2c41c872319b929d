import { request as httpRequest } from 'node:http';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DSP_CONTEXT } from '../../src/dsp.js';
import { transferProcessWorkflowId } from '../../src/ids.js';
import { providerPidFor } from '../../src/processStart.js';
import { freePort, startCluster, type Cluster } from '../support/cluster.js';
import { makeAsset } from '../support/transfers.js';
import { fuzzParams } from './params.js';

/**
 * Property-based fuzzing of the DSP endpoint, on a real DSP server and Temporal dev server: every
 * invalid message (mutated valid ones, arbitrary JSON, oversize and deeply nested bodies, wrong
 * content types, unicode tricks, paths that try to leave the route) gets a 4xx, never a 5xx; no
 * workflow is started; a process held in REQUESTED keeps its state and history; the server lives on.
 */
let cluster: Cluster;
let base: string;
let port: number;
let heldPid: string;
const TOKEN = 'consumer-fuzz-token-0123456789';
const CONSUMER = 'http://127.0.0.1:9/dsp';
const HELD = 'held-consumer-pid';
let heldHistory: number;

beforeAll(async () => {
  cluster = await startCluster();
  port = await freePort();
  base = `http://127.0.0.1:${port}/dsp`;
  makeAsset(cluster.root, 'provider/assets/a.bin', 1024);
  await cluster.controlPlane({
    connectorId: 'provider',
    dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
    assets: { a: { endpointType: 'File', endpoint: path.join(cluster.root, 'provider/assets/a.bin') } },
    agreements: {
      'ag-1': { assetId: 'a', counterparty: 'consumer', start: 'manual' },
      'ag-other': { assetId: 'a', counterparty: 'someone-else' },
    },
    dsp: {
      host: '127.0.0.1',
      port,
      publicUrl: base,
      counterparties: [
        { id: 'consumer', address: CONSUMER, inboundToken: TOKEN, outboundToken: 'provider-fuzz-token-0123456789' },
        { id: 'someone-else', address: 'http://127.0.0.1:9/dsp/else', inboundToken: 'someone-else-token-0123456789', outboundToken: 'provider-fuzz-token-0123456789' },
      ],
      limits: { maxRequests: 1_000_000, bodyBytes: 16 * 1024 },
    },
  });
  // one process held in REQUESTED (manual start): messages must not move it
  const held = await send('POST', '/dsp/transfers/request', JSON.stringify(validRequest(HELD)));
  expect(held.status).toBe(201);
  heldPid = providerPidFor('consumer', HELD);
  await cluster.ferry.waitForState('provider', heldPid, ['REQUESTED']);
  heldHistory = (await cluster.ferry.status('provider', heldPid)).history.length;
});

afterAll(async () => cluster?.shutdown());

function send(method: string, pathAndQuery: string, body?: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }): Promise<{ status: number; text: string }> {
  // node:http, not fetch: fetch refuses some of the paths and headers an attacker sends
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path: pathAndQuery, headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const validRequest = (consumerPid: string): Record<string, unknown> => ({
  '@context': [DSP_CONTEXT],
  '@type': 'TransferRequestMessage',
  consumerPid,
  agreementId: 'ag-1',
  format: 'File-PUSH',
  callbackAddress: CONSUMER,
  dataAddress: { '@type': 'DataAddress', endpointType: 'File', endpoint: `inbox/${consumerPid}` },
});

// ---- what an attacker puts where a value belongs -------------------------------------------------
const TRICKS = ['\u0000', '\u202E', '\u202D', '\u2066', '\uD800', '\uDFFF', '\u200B', '\uFEFF', '\u0007', '\u001B', '\u0085', '\r\n'];
const tricky = fc.tuple(fc.string({ maxLength: 20 }), fc.constantFrom(...TRICKS), fc.string({ maxLength: 20 })).map(([a, t, b]) => a + t + b);
const notAString = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }));
/** Never a valid id (pid, agreement id): empty, oversize, spaces, controls, bidi, surrogates, homoglyphs, not a string. */
const badId = fc.oneof(
  fc.constant(''),
  fc.string({ minLength: 257, maxLength: 3000 }).map((s) => `x${s}`.padEnd(257, 'x')),
  tricky,
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => `a b${s}`),
  fc.constantFrom('аg-1' /* Cyrillic а */, 'ag‐1' /* hyphen U+2010 */, 'ag-１'),
  notAString,
);
const leavingPaths = fc.constantFrom('../etc', '../../etc/passwd', 'inbox/../../x', '..\\..\\x', 'inbox/..\\..\\x', 'assets', 'provider/assets', 'provider/assets/a.bin', 'C:\\Windows', 'C:x');
const badCallback = fc.oneof(
  fc.constantFrom(
    'http://127.0.0.1:9/dsp/else', // another counterparty's address
    'http://127.0.0.1:9/dsp/%2e%2e/x',
    'http://127.0.0.1:9/dsp/../x',
    'http://u:p@127.0.0.1:9/dsp',
    'http://127.0.0.1:9/dspx',
    'http://127.0.0.1:10/dsp',
    'https://127.0.0.1:9/dsp',
    'http://localhost:9/dsp',
    'temporal://provider',
    'file:///etc/passwd',
    'http://127.0.0.1:9/dsp?x=1',
    'javascript:alert(1)',
  ),
  fc.string({ minLength: 1100, maxLength: 3000 }).map((s) => `${CONSUMER}/${encodeURIComponent(s)}`),
  tricky.map((t) => `${CONSUMER}/${t}`).filter((s) => /[\u0000-\u001F\u007F-\u009F\u200B\u202A-\u202E\u2066-\u2069\uFEFF]|[\uD800-\uDFFF]/.test(s)),
  notAString,
);
const badAddress = fc.oneof(
  fc.record({ endpointType: fc.constant('File'), endpoint: leavingPaths }),
  fc.record({ endpointType: fc.constantFrom('HttpData', 'https://w3id.org/idsa/v4.1/HTTP'), endpoint: fc.constantFrom('http://10.0.0.1/admin', 'http://169.254.169.254/') }),
  fc.record({ endpointType: fc.oneof(fc.string({ maxLength: 10 }).filter((s) => !['File', 'HttpData', 'https://w3id.org/idsa/v4.1/HTTP'].includes(s)), notAString), endpoint: fc.constant('inbox/x') }),
  fc.record({ endpointType: fc.constant('File'), endpoint: fc.oneof(tricky.filter((s) => !/^[^\u0000-\u001F\u007F-\u009F\u200B\u202A-\u202E\u2066-\u2069\uFEFF\uD800-\uDFFF]*$/.test(s)), fc.constant(''), fc.string({ minLength: 4097, maxLength: 6000 }).map((s) => s.padEnd(4097, 'x'))) }),
  fc.record({ endpointType: fc.constant('File'), endpoint: fc.constant('inbox/x'), endpointProperties: fc.oneof(fc.array(fc.record({ name: fc.constant('p'), value: fc.constant('v') }), { minLength: 65, maxLength: 80 }), fc.constant([{ name: 'a b', value: 'v' }]), fc.constant([{ name: 'p', value: 'v\u0000' }]), fc.constant([{ name: 'p', value: { nested: { deep: true } } }]), notAString) }),
  notAString,
);
const badFormat = fc.oneof(fc.string({ maxLength: 30 }).filter((s) => !['File-PUSH', 'HttpData-PULL'].includes(s)), fc.constantFrom('HttpData-PUSH', 'file-push', 'File-PUSH ', 'File-PULL'), notAString);
const badContext = fc.oneof(fc.constant([]), fc.constant(['https://example.com/other']), fc.constant(DSP_CONTEXT), fc.array(fc.string({ maxLength: 600 }), { minLength: 17, maxLength: 20 }), notAString);

/** A valid request with one field made invalid (or removed). */
const mutatedRequest = fc.oneof(
  fc.record({ field: fc.constant('consumerPid'), value: badId }),
  fc.record({ field: fc.constant('agreementId'), value: fc.oneof(badId, fc.constantFrom('ag-other', 'ag-none', '__proto__', 'constructor')) }),
  fc.record({ field: fc.constant('callbackAddress'), value: badCallback }),
  fc.record({ field: fc.constant('dataAddress'), value: badAddress }),
  fc.record({ field: fc.constant('format'), value: badFormat }),
  fc.record({ field: fc.constant('@context'), value: badContext }),
  fc.record({ field: fc.constant('@type'), value: fc.oneof(fc.constantFrom('TransferStartMessage', 'transferrequestmessage', ''), notAString) }),
  fc.record({ field: fc.constantFrom('consumerPid', 'agreementId', 'callbackAddress', 'format', '@type'), value: fc.constant(undefined) }),
  fc.record({ field: fc.constant('assetId'), value: fc.oneof(badId, fc.constant('not-the-agreements-asset')) }),
);

const run = <T>(arb: fc.Arbitrary<T>, check: (t: T) => Promise<void>, runs = 100) => fc.assert(fc.asyncProperty(arb, check), fuzzParams(runs));
const is4xx = (status: number) => status >= 400 && status < 500;

describe('DSP messages, fuzzed', () => {
  it('a transfer request with any one field made invalid: 4xx, no workflow', async () => {
    let n = 0;
    await run(mutatedRequest, async ({ field, value }) => {
      const pid = `fuzz-${n++}`;
      const msg = validRequest(pid);
      if (value === undefined) delete msg[field];
      else msg[field] = value;
      const res = await send('POST', '/dsp/transfers/request', JSON.stringify(msg));
      expect(is4xx(res.status), `${res.status} ${res.text.slice(0, 300)}`).toBe(true);
      const who = typeof msg.consumerPid === 'string' ? msg.consumerPid : pid;
      await expect(cluster.client.workflow.getHandle(transferProcessWorkflowId('provider', providerPidFor('consumer', who))).describe()).rejects.toThrow(/not found/i);
    }, 300);
  });

  it('arbitrary JSON, to every route: 4xx', async () => {
    const route = fc.constantFrom('/dsp/transfers/request', `/dsp/transfers/HELD/start`, `/dsp/transfers/HELD/termination`, `/dsp/transfers/HELD/suspension`, `/dsp/transfers/HELD/completion`);
    await run(fc.tuple(route, fc.jsonValue({ maxDepth: 6 })), async ([r, body]) => {
      const res = await send('POST', r.replace('HELD', heldPid), JSON.stringify(body));
      expect(is4xx(res.status), `${res.status} ${res.text.slice(0, 300)}`).toBe(true);
    }, 200);
  });

  it('process messages for the held process, each invalid in some way: 4xx, its state and history unchanged', async () => {
    const kinds = { start: 'TransferStartMessage', suspension: 'TransferSuspensionMessage', completion: 'TransferCompletionMessage', termination: 'TransferTerminationMessage' } as const;
    const message = fc.record({
      kind: fc.constantFrom(...(Object.keys(kinds) as (keyof typeof kinds)[])),
      mutation: fc.oneof(
        fc.record({ field: fc.constantFrom('consumerPid', 'providerPid'), value: fc.oneof(badId, fc.constantFrom('someone-elses-pid', 'p-0000')) }),
        fc.record({ field: fc.constant('@context'), value: badContext }),
        fc.record({ field: fc.constant('reason'), value: fc.oneof(fc.array(fc.string({ minLength: 1001, maxLength: 1200 }), { minLength: 1, maxLength: 2 }), fc.array(fc.constant('r'), { minLength: 17, maxLength: 30 }), fc.constant(['a\u0000b']), notAString.filter((v) => !Array.isArray(v) || v.length > 0)) }),
        fc.record({ field: fc.constant('code'), value: fc.oneof(badId.filter((v) => v !== ''), fc.constant('')) }),
        fc.record({ field: fc.constant('dataAddress'), value: badAddress }),
        fc.record({ field: fc.constant('@type'), value: fc.constantFrom('TransferRequestMessage', 'TransferError', 'x') }),
        // well-formed but not allowed in REQUESTED (a termination always gets a mutation above)
        fc.record({ field: fc.constant('none'), value: fc.constant(undefined) }),
      ),
    });
    await run(message, async ({ kind, mutation }) => {
      if (kind === 'termination' && mutation.field === 'none') return; // the one legal message: not an invalid input
      if (kind === 'termination' && mutation.field === 'dataAddress') return; // a termination ignores unknown fields
      if (mutation.field === 'reason' && (kind === 'start' || kind === 'completion')) return; // not fields of these: ignored
      if (mutation.field === 'code' && (kind === 'start' || kind === 'completion')) return;
      if (mutation.field === 'dataAddress' && kind !== 'start' && kind !== 'termination') return;
      const msg: Record<string, unknown> = { '@context': [DSP_CONTEXT], '@type': kinds[kind], consumerPid: HELD, providerPid: heldPid };
      if (mutation.field !== 'none') msg[mutation.field] = mutation.value;
      const res = await send('POST', `/dsp/transfers/${heldPid}/${kind}`, JSON.stringify(msg));
      expect(is4xx(res.status), `${res.status} ${res.text.slice(0, 300)}`).toBe(true);
    }, 300);
    const status = await cluster.ferry.status('provider', heldPid);
    expect(status.state).toBe('REQUESTED');
    expect(status.history.length).toBe(heldHistory);
  });

  it('paths that try to leave the route, odd pids and kinds, any method: 4xx', async () => {
    const segment = fc.oneof(
      fc.constantFrom('..', '%2e%2e', '%2E%2e', '.', '%2f', '..%2f..%2f', '%00', '%ZZ', '%', '\\..\\', '~', 'transfers', 'request', heldPid, `${heldPid}%2f..`),
      fc.string({ maxLength: 30 }).map(encodeURIComponent),
      fc.string({ minLength: 1000, maxLength: 3000 }).map((s) => encodeURIComponent(s.padEnd(1000, 'p'))),
    );
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS');
    await run(fc.tuple(method, fc.array(segment, { minLength: 1, maxLength: 4 })), async ([m, segments]) => {
      const p = `/dsp/transfers/${segments.join('/')}`;
      if (m === 'GET' && segments.length === 1 && segments[0] === heldPid) return; // the one legal read
      const res = await send(m, p, m === 'GET' ? undefined : JSON.stringify({ '@context': [DSP_CONTEXT], '@type': 'TransferTerminationMessage', consumerPid: HELD, providerPid: heldPid, reason: ['fuzz'] }));
      if (m === 'POST' && segments.length === 2 && segments[0] === heldPid && segments[1] === 'termination') return; // legal (skipped above by construction: never generated so)
      expect(is4xx(res.status), `${m} ${p.slice(0, 200)}: ${res.status}`).toBe(true);
    }, 300);
    expect((await cluster.ferry.status('provider', heldPid)).state).toBe('REQUESTED');
  });

  it('oversize and deeply nested bodies, wrong content types, no or bad credentials: 4xx', async () => {
    const body = fc.oneof(
      fc.integer({ min: 1, max: 8000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
      fc.integer({ min: 1, max: 5000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
      fc.integer({ min: 1, max: 3000 }).map((n) => JSON.stringify({ ...validRequest('deep'), dataAddress: { endpointType: 'File', endpoint: 'x', endpointProperties: JSON.parse('['.repeat(n) + ']'.repeat(n)) } })),
      fc.integer({ min: 17 * 1024, max: 200 * 1024 }).map((n) => JSON.stringify({ ...validRequest('big'), padding: 'x'.repeat(n) })),
      fc.constantFrom('{"__proto__":{"polluted":1},"@type":"TransferRequestMessage"}', '{"constructor":{"prototype":{"x":1}}}', '', 'null', '\u0000', '{"a":1,"a":2}', '\uFEFF{}'),
    );
    const headers = fc.oneof(
      fc.constant({ 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }),
      fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16', 'application/xml', '').map((ct) => ({ 'content-type': ct, authorization: `Bearer ${TOKEN}` })),
      fc.constantFrom('', 'Bearer', `Bearer ${TOKEN}x`, `bearer ${TOKEN}`, `Basic ${TOKEN}`, `Bearer  ${TOKEN}`, `Bearer ${TOKEN.slice(1)}`).map((auth) => ({ 'content-type': 'application/json', authorization: auth })),
    );
    await run(fc.tuple(body, headers), async ([b, h]) => {
      const res = await send('POST', '/dsp/transfers/request', b, h);
      expect(is4xx(res.status), `${res.status} ${res.text.slice(0, 200)}`).toBe(true);
      if (h.authorization !== `Bearer ${TOKEN}`) expect(res.status).toBe(404); // unknown callers learn nothing, whatever the body
    }, 150);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('afterwards: the server answers, nothing was started but the held process, which is unchanged', async () => {
    expect((await send('GET', '/.well-known/dspace-version')).status).toBe(200);
    const status = await cluster.ferry.status('provider', heldPid);
    expect(status.state).toBe('REQUESTED');
    expect(status.history.length).toBe(heldHistory);
    await expect.poll(async () => (await cluster.client.workflow.count(`WorkflowType = 'transferProcess'`)).count, { timeout: 30_000 }).toBe(1);
  });
});
