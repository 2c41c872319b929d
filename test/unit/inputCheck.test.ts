import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkTransferProcessInput } from '../../src/inputCheck.js';
import { LIMITS } from '../../src/limits.js';
import { TransferProcessInputSchema } from '../../src/schemas/TransferProcess.js';
import { fuzzParams } from '../fuzz/params.js';

/**
 * The TransferProcess workflow checks its input by hand (no zod in the workflow bundle): it must
 * accept exactly what TransferProcessInputSchema accepts, and hand the workflow what the schema
 * outputs (settings' ranges are the one exception: the openTransfer activity checks them).
 */
const valid = {
  role: 'CONSUMER',
  connectorId: 'consumer',
  processId: 'p-1',
  counterpartyAddress: 'temporal://provider',
  agreementId: 'agreement-1',
  assetId: 'asset-1',
  transferType: 'File-PUSH',
};

/** Values that break some rule of some field, and good ones. */
const anyValue = fc.oneof(
  fc.constantFrom(undefined, null, 0, 1.5, true, [], {}, '', ' ', 'ok', 'has space', 'a'.repeat(129), 'b'.repeat(257), '\u202e', '\ud800', 'x\ny', 'é'),
  fc.constantFrom('CONSUMER', 'PROVIDER', 'File-PUSH', 'HttpData-PULL', 'Carrier-Pigeon', 'manual', 'automatic', 'temporal://x', `https://c.example/${'€'.repeat(400)}`),
  fc.string({ maxLength: 20 }),
);
const address = fc.record(
  {
    endpointType: fc.constantFrom('File', 'HttpData', 'https://w3id.org/idsa/v4.1/HTTP', 'S3', undefined),
    endpoint: fc.oneof(
      anyValue,
      fc.constantFrom('out/a.bin', 'https://x.example/in?token=1', 'https://x.example/in?sig=1&sig=2', 'https://u:p@x.example/', 'https://x.example/?a=1'),
    ),
    endpointProperties: fc.oneof(
      fc.constant(undefined),
      fc.constant('nope'),
      fc.array(fc.record({ name: fc.constantFrom('a', 'query:token', 'has space', ''), value: fc.constantFrom('v', '\u0001', '\t'), junk: fc.constant(1) }), { maxLength: 3 }),
      fc.constant(Array.from({ length: LIMITS.properties }, (_, i) => ({ name: `p${i}`, value: 'v' }))),
    ),
    extra: fc.constant('dropped'),
  },
  { requiredKeys: [] },
);
const settings = fc.oneof(
  fc.constant(undefined),
  fc.constant('5m'),
  fc.dictionary(fc.constantFrom('requestedTimeout', 'staleRetries', 'counterpartyTimeout', 'bogus'), fc.constantFrom('10s', '5m', 'soon', 3, 2.5, undefined), { maxKeys: 3 }),
);

describe('the workflow input check', () => {
  it('accepts what the schema accepts, refuses what it refuses, and outputs what it outputs', () => {
    const keys = Object.keys(TransferProcessInputSchema.shape);
    const input = fc.record({
      base: fc.constant(valid),
      changes: fc.dictionary(fc.constantFrom(...keys, 'unknown'), anyValue, { maxKeys: 2 }),
      dataDestination: fc.option(address, { nil: undefined }),
      settings,
    });
    fc.assert(
      fc.property(input, ({ base, changes, dataDestination, settings }) => {
        const raw: Record<string, unknown> = { ...base, ...changes };
        if (dataDestination !== undefined) raw.dataDestination = dataDestination;
        if (settings !== undefined) raw.settings = settings;
        const schema = TransferProcessInputSchema.safeParse(raw);
        const check = checkTransferProcessInput(raw);
        const rangeOnly = !schema.success && schema.error.issues.every((i) => i.path[0] === 'settings' && /between/.test(i.message));
        if (rangeOnly) return;
        expect('input' in check, JSON.stringify({ raw, schema: schema.error?.issues, check })).toBe(schema.success);
        if (schema.success && 'input' in check) {
          // as a payload carries them (JSON: key order kept, undefined dropped)
          expect(JSON.stringify(check.input)).toBe(JSON.stringify(schema.data));
        }
      }),
      fuzzParams(2000),
    );
  });

  it('names what is wrong', () => {
    const bad = checkTransferProcessInput({ role: 'CONSUMER', connectorId: 'flaky' });
    expect(bad).toEqual({ problems: expect.arrayContaining(['processId: required', 'counterpartyAddress: required']) });
    expect(checkTransferProcessInput({ ...valid, transferType: 'Carrier-Pigeon' })).toEqual({
      problems: ['transferType: unsupported transferType "Carrier-Pigeon"; supported: File-PUSH, HttpData-PUSH, HttpData-PULL'],
    });
    expect(checkTransferProcessInput({ ...valid, processId: 'has space' })).toEqual({ problems: [expect.stringMatching(/^processId: ids use letters/)] });
    expect(checkTransferProcessInput({ ...valid, dataDestination: { endpointType: 'S3', endpoint: 'b' } })).toEqual({ problems: [expect.stringMatching(/unknown endpointType "S3"/)] });
    expect(checkTransferProcessInput('nope')).toEqual({ problems: ['input must be an object'] });
  });
});
