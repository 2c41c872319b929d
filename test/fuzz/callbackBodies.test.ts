import { request as httpRequest } from 'node:http';
import fc from 'fast-check';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/keys.js';
import { callbackSigner, startCallbackServer, type CallbackServer } from '../../worker/callbackServer.js';
import { fuzzParams } from './params.js';

/**
 * Provisioner callback bodies, fuzzed (parsing only): on a correctly signed callback URL, any
 * invalid body gets a 4xx and never reaches Temporal. The server's client points at a port nobody
 * listens on: a body that got past parsing would be a 503 (cannot signal), and the property says so.
 */
let server: CallbackServer;
let url: URL;
const keys = Keyring.generate('fuzz');

beforeAll(async () => {
  const client = new Client({ connection: Connection.lazy({ address: '127.0.0.1:1', connectTimeout: '1s' }) });
  server = await startCallbackServer({ host: '127.0.0.1', port: 0, client, keys, signalTimeoutMs: 1000, logger: { warn: () => undefined } });
  url = new URL(callbackSigner(keys).callbackUrl(server.url, { workflowId: 'dataflow-dp-f', op: 'provision', provisioner: 'svc', side: 'destination', expiresAt: new Date(Date.now() + 3_600_000) }));
});
afterAll(() => server?.close());

function post(body: string | Buffer, contentType = 'application/json'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method: 'POST', path: `${url.pathname}${url.search}`, headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? resolve(413) : reject(e)));
    req.end(body);
  });
}

const TRICKS = ['\u0000', '\u202E', '\uD800', '\u0007'];
const tricky = fc.tuple(fc.string({ maxLength: 10 }), fc.constantFrom(...TRICKS), fc.string({ maxLength: 10 })).map(([a, t, b]) => a + t + b);
const badAddress = fc.oneof(
  fc.record({ endpointType: fc.string({ maxLength: 10 }).filter((s) => !['File', 'HttpData', 'https://w3id.org/idsa/v4.1/HTTP'].includes(s)), endpoint: fc.constant('x') }),
  fc.record({ endpointType: fc.constant('File'), endpoint: fc.oneof(fc.constant(''), tricky.filter((s) => /[\u0000\u202E\uD800\u0007]/.test(s)), fc.constant('x'.repeat(5000))) }),
  fc.record({ endpointType: fc.constant('File'), endpoint: fc.constant('x'), endpointProperties: fc.oneof(fc.constant([{ name: 'a b', value: 'v' }]), fc.constant([{ name: 'n', value: 'v\u0000' }]), fc.array(fc.constant({ name: 'n', value: 'v' }), { minLength: 65, maxLength: 70 }), fc.constant('not-an-array')) }),
  fc.oneof(fc.integer(), fc.string(), fc.constant([])),
);

describe('provisioner callback bodies, fuzzed', () => {
  it('invalid JSON bodies: 4xx', async () => {
    const body = fc.oneof(
      fc.jsonValue().filter((v) => !(v && typeof v === 'object' && !Array.isArray(v) && typeof (v as { ok?: unknown }).ok === 'boolean')),
      fc.record({ ok: fc.boolean(), address: badAddress }),
      fc.record({ ok: fc.boolean(), error: fc.oneof(fc.integer(), fc.constant({}), fc.constant([])) }),
      fc.record({ ok: fc.oneof(fc.constantFrom('true', 1, 0, null)) }),
    );
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const status = await post(JSON.stringify(b));
        expect(status >= 400 && status < 500, `${status} for ${JSON.stringify(b).slice(0, 200)}`).toBe(true);
      }),
      fuzzParams(300),
    );
  });

  it('not JSON, oversize, deeply nested, odd content types: 4xx', async () => {
    const body = fc.oneof(
      fc.string({ maxLength: 50 }).filter((s) => {
        try {
          JSON.parse(s);
          return false;
        } catch {
          return true;
        }
      }),
      fc.integer({ min: 1, max: 100_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
      fc.integer({ min: 1, max: 20_000 }).map((n) => `{"ok":true,"address":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`),
      fc.constant(JSON.stringify({ ok: true, padding: 'x'.repeat(1024 * 1024 + 1) })),
      fc.constant('\uFEFF{"ok":true}'),
    );
    const contentType = fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', '');
    await fc.assert(
      fc.asyncProperty(body, contentType, async (b, ct) => {
        const status = await post(b, ct);
        expect(status >= 400 && status < 500, `${status} for ${b.slice(0, 100)}`).toBe(true);
      }),
      fuzzParams(100),
    );
  });

  it('a valid body does get past parsing (so the 4xx above mean something): 503, Temporal unreachable', async () => {
    expect(await post(JSON.stringify({ ok: true }))).toBe(503);
  });
});
