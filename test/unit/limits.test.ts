import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataAddressSchema } from '../../src/schemas/DataAddress.js';
import { LIMITS, utf8Bytes } from '../../src/limits.js';
import { AddressSchema, AgreementIdSchema, PidSchema } from '../../src/schemas/limits.js';
import { TransferProcessInputSchema } from '../../src/schemas/TransferProcess.js';
import { fuzzParams } from '../fuzz/params.js';

/** What one layer accepts, the next one accepts too: the bounds are one set of schemas. */
describe('bounds shared by every layer', () => {
  const visible = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: LIMITS.pid });

  it('any pid the DSP schema accepts fits the DSP route once percent-encoded (no 414)', () => {
    fc.assert(
      fc.property(visible, (pid) => {
        expect(PidSchema.safeParse(pid).success).toBe(true);
        // worker/dspServer.ts: maxParamLength = 3 × LIMITS.pid + 64
        expect(encodeURIComponent(pid).length).toBeLessThanOrEqual(3 * LIMITS.pid + 64);
      }),
      fuzzParams(),
    );
  });

  it('any address the boundary accepts fits a Temporal keyword search attribute (2048 bytes)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 3000, unit: 'grapheme' }), (address) => {
        if (AddressSchema.safeParse(address).success) expect(utf8Bytes(address)).toBeLessThanOrEqual(2048);
      }),
      fuzzParams(),
    );
    expect(utf8Bytes('€'.repeat(400))).toBe(1200);
    expect(AddressSchema.safeParse(`https://x/${'€'.repeat(400)}`).success).toBe(false);
  });

  it('a data address accepted at the boundary is accepted again by every later parse (workflow input included)', () => {
    const value = fc.string({ maxLength: LIMITS.propertyValue, unit: 'binary' }).filter((v) => !/[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]/.test(v));
    const endpoint = fc.oneof(
      fc.constant('https://x.example/in'),
      // credential-like query parameters are moved into `query:` properties on the way in
      fc.array(fc.constantFrom('token', 'sig', 'api_key', 'x', 'secret'), { maxLength: 6 }).map((names) => `https://x.example/in?${names.map((n, i) => `${n}${i}=v`).join('&')}`),
    );
    const address = fc.record({
      endpointType: fc.constant('HttpData' as const),
      endpoint,
      endpointProperties: fc.array(fc.record({ name: fc.stringMatching(/^[a-z][a-z0-9:-]{0,20}$/), value }), { maxLength: LIMITS.properties }),
    });
    fc.assert(
      fc.property(address, (raw) => {
        const first = DataAddressSchema.safeParse(raw);
        if (!first.success) return;
        expect(DataAddressSchema.safeParse(first.data).success).toBe(true);
        const input = TransferProcessInputSchema.safeParse({
          role: 'PROVIDER',
          connectorId: 'provider',
          processId: 'p-1',
          counterpartyPid: 'c'.repeat(LIMITS.pid),
          counterpartyAddress: `https://c.example/${'a'.repeat(900)}`,
          agreementId: 'a'.repeat(LIMITS.agreementId),
          assetId: 'b'.repeat(LIMITS.assetId),
          transferType: 'HttpData-PUSH',
          dataDestination: first.data,
        });
        expect(input.success, JSON.stringify(input.error?.issues)).toBe(true);
      }),
      fuzzParams(50),
    );
  });

  it('ids refuse controls, NUL, bidi overrides, zero-width characters, lone surrogates, spaces and homoglyphs', () => {
    for (const bad of ['a\u0000', 'a\u202Eb', 'a\u200Bb', 'a\uD800', 'a\uDC00b', 'a b', 'аgreement', 'a\tb', '', 'x'.repeat(257)]) {
      expect(PidSchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
      expect(AgreementIdSchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
    expect(AgreementIdSchema.safeParse('urn:uuid:0b9ad5a4-3a1b-4a39-9e1e-1c6d7f0b1a2c:ZGVm').success).toBe(true);
  });
});
