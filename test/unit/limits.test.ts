import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataAddressSchema } from '../../src/DataAddress.js';
import { AddressSchema, AgreementIdSchema, LIMITS, PidSchema, utf8Bytes } from '../../src/limits.js';
import { SecretBox } from '../../src/secrets.js';
import { TransferProcessInputSchema } from '../../src/TransferProcess.js';
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

  it('a data address accepted at the boundary is still accepted once its secrets are sealed (workflow input)', () => {
    const box = SecretBox.fromBase64(SecretBox.generateKeyBase64());
    const value = fc.string({ maxLength: LIMITS.propertyValue, unit: 'binary' }).filter((v) => !/[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]/.test(v));
    fc.assert(
      fc.property(value, (v) => {
        const address = DataAddressSchema.safeParse({ endpointType: 'HttpData', endpoint: 'https://x.example/in', endpointProperties: [{ name: 'authorization', value: v }] });
        if (!address.success) return;
        const sealed = box.seal(address.data);
        expect(DataAddressSchema.safeParse(sealed).success).toBe(true);
        const input = TransferProcessInputSchema.safeParse({
          role: 'PROVIDER',
          connectorId: 'provider',
          processId: 'p-1',
          counterpartyPid: 'c'.repeat(LIMITS.pid),
          counterpartyAddress: `https://c.example/${'a'.repeat(900)}`,
          agreementId: 'a'.repeat(LIMITS.agreementId),
          assetId: 'b'.repeat(LIMITS.assetId),
          transferType: 'HttpData-PUSH',
          dataDestination: sealed,
        });
        expect(input.success).toBe(true);
      }),
      fuzzParams(30),
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
