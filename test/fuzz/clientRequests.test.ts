import fc from 'fast-check';
import { Client, Connection } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { FerryClient, InvalidRequestError, TransferRequestSchema } from '../../src/client.js';
import { TransferSettingsSchema } from '../../src/schemas/settings.js';
import { fuzzParams } from './params.js';

/**
 * Client requests, fuzzed: whatever a user (or a program) passes to startTransfer, an invalid
 * request is an InvalidRequestError before anything is sent to Temporal. The client here points at
 * a port nobody listens on: a request that got past validation would fail with a connection error
 * instead, and the property would say so.
 */
const ferry = new FerryClient(new Client({ connection: Connection.lazy({ address: '127.0.0.1:1', connectTimeout: '1s' }) }));
const valid = () => ({
  connectorId: 'consumer',
  processId: 'p-1',
  counterpartyAddress: 'https://provider.example/dsp',
  agreementId: 'ag-1',
  assetId: 'a',
  transferType: 'File-PUSH',
  dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
  settings: { requestedTimeout: '2m' },
});
const TRICKS = ['\u0000', '\u202E', '\uD800', '\u200B', '\u0007', ' '];
const tricky = fc.tuple(fc.string({ maxLength: 10 }), fc.constantFrom(...TRICKS), fc.string({ maxLength: 10 })).map(([a, t, b]) => `x${a}${t}${b}`);
const notAString = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.object({ maxDepth: 1 }));
const SETTINGS = Object.keys(TransferSettingsSchema.shape);

describe('client requests, fuzzed', () => {
  it('the reference request is valid (so the refusals below mean something)', () => {
    expect(TransferRequestSchema.safeParse(valid()).success).toBe(true);
  });

  it('any one field made invalid: InvalidRequestError, nothing sent', async () => {
    const mutation = fc.oneof(
      fc.record({ field: fc.constantFrom('connectorId', 'processId'), value: fc.oneof(tricky, fc.string({ minLength: 129, maxLength: 300 }), fc.constant(''), fc.constant('../x'), notAString) }),
      fc.record({ field: fc.constantFrom('agreementId', 'assetId'), value: fc.oneof(tricky, fc.string({ minLength: 257, maxLength: 2000 }).map((s) => s.padEnd(257, 'x')), fc.constant(''), notAString) }),
      fc.record({
        field: fc.constant('counterpartyAddress'),
        value: fc.oneof(
          fc.constantFrom('provider', 'temporal://', 'temporal://../x', 'temporal://a b', 'ftp://x/', 'https://u:p@provider.example/dsp', 'https://provider.example/%2fx', 'javascript:alert(1)', ''),
          fc.string({ minLength: 1100, maxLength: 2500 }).map((s) => `https://provider.example/${encodeURIComponent(s)}`.padEnd(1100, 'x')),
          tricky.map((t) => `https://provider.example/${t}`).filter((s) => !/^[\x20-\x7E]*$/.test(s)),
          notAString,
        ),
      }),
      fc.record({ field: fc.constant('transferType'), value: fc.oneof(fc.string({ maxLength: 20 }).filter((s) => !['File-PUSH', 'HttpData-PUSH', 'HttpData-PULL'].includes(s)), notAString) }),
      fc.record({
        field: fc.constant('dataDestination'),
        value: fc.oneof(
          fc.record({ endpointType: fc.constant('File'), endpoint: fc.constantFrom('../x', '/etc', 'a/../../b', 'C:\\x', '', 'a\u0000b', 'a\u202Eb') }),
          fc.record({ endpointType: fc.constantFrom('HttpData', 'S3'), endpoint: fc.constant('https://x.example/in') }),
          fc.record({ endpointType: fc.constant('File'), endpoint: fc.constant('in'), endpointProperties: fc.array(fc.record({ name: fc.constant('p'), value: fc.constant('v') }), { minLength: 65, maxLength: 70 }) }),
          notAString,
        ),
      }),
      fc.record({
        field: fc.constant('settings'),
        value: fc.oneof(
          // unknown keys: typos never silently run on a default
          fc.tuple(fc.string({ minLength: 1, maxLength: 20 }).filter((k) => !SETTINGS.includes(k) && k !== '__proto__'), fc.jsonValue()).map(([k, v]) => ({ [k]: v })),
          fc.constantFrom({ requestedTimout: '2m' }, { requestedTimeout: '0s' }, { requestedTimeout: '999999999999d' }, { requestedTimeout: 'soon' }, { retryInitialInterval: '1ms' }, { staleRetries: -1 }, { staleRetries: 1.5 }, { activityMaxAttempts: 0 }, { suspendedTimeout: '400d' }, { counterpartyTimeout: 0 }),
          notAString.filter((v) => v !== null),
        ),
      }),
      fc.record({ field: fc.constantFrom('unknownField', 'counterparty', 'dest'), value: fc.jsonValue() }),
    );
    await fc.assert(
      fc.asyncProperty(mutation, async ({ field, value }) => {
        const req: Record<string, unknown> = { ...valid(), [field]: value };
        if (field === 'settings' && value === undefined) return;
        const error = await ferry.startTransfer(req as never).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, `${field}=${JSON.stringify(value)?.slice(0, 200)}: ${String(error)}`).toBeInstanceOf(InvalidRequestError);
      }),
      fuzzParams(300),
    );
  });

  it('every setting within its range is accepted, and just outside it refused', () => {
    const ranges: Record<string, [number, number]> = {
      requestedTimeout: [1000, 7 * 86_400_000],
      retryInitialInterval: [100, 3_600_000],
      retryMaximumInterval: [100, 86_400_000],
      counterpartyTimeout: [1000, 90 * 86_400_000],
      suspendedTimeout: [1000, 366 * 86_400_000],
    };
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(ranges)), fc.double({ min: 0, max: 1, noNaN: true }), (setting, t) => {
        const [lo, hi] = ranges[setting]!;
        const inside = Math.round(lo + t * (hi - lo));
        const ok = (ms: number) => TransferRequestSchema.safeParse({ ...valid(), settings: { [setting]: ms } }).success;
        expect(ok(inside)).toBe(true);
        expect(ok(lo - 1)).toBe(false);
        expect(ok(hi + 1)).toBe(false);
      }),
      fuzzParams(200),
    );
  });
});
