import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { endpointUrl, isDisplayableProperty, redact, redactUrl, type DataAddress } from '../../src/DataAddress.js';
import { DataAddressSchema } from '../../src/schemas/DataAddress.js';
import { TransferRequestSchema } from '../../src/client.js';
import { toDspDataAddress } from '../../src/dsp.js';

const http = (endpoint: string, endpointProperties: DataAddress['endpointProperties'] = []): DataAddress => ({ endpointType: 'HttpData', endpoint, endpointProperties });

describe('redact (allowlist)', () => {
  it('masks every property value except the known-safe names', () => {
    const address = http('https://sink.example/in', [
      { name: 'method', value: 'PUT' },
      { name: 'contentType', value: 'text/csv' },
      { name: 'header:Cookie', value: 'session=abc' },
      { name: 'header:X-Signature', value: 'sig' },
      { name: 'authorization', value: 'Bearer t' },
      { name: 'x-whatever-a-provisioner-invents', value: 'hunter2' },
      { name: 'https://w3id.org/edc/v0.0.1/ns/contentType', value: 'text/csv' },
      { name: 'https://w3id.org/edc/v0.0.1/ns/authKey', value: 'X-Api-Key' },
    ]);
    expect(redact(address).endpointProperties).toEqual([
      { name: 'method', value: 'PUT' },
      { name: 'contentType', value: 'text/csv' },
      { name: 'header:Cookie', value: '***' },
      { name: 'header:X-Signature', value: '***' },
      { name: 'authorization', value: '***' },
      { name: 'x-whatever-a-provisioner-invents', value: '***' },
      { name: 'https://w3id.org/edc/v0.0.1/ns/contentType', value: 'text/csv' },
      { name: 'https://w3id.org/edc/v0.0.1/ns/authKey', value: '***' },
    ]);
  });

  it('shows no value of a property whose name is not allowlisted (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ name: fc.string({ minLength: 1 }), value: fc.string({ minLength: 4 }) })), (props) => {
        const shown = redact(http('https://x.example/', props));
        shown.endpointProperties.forEach((p, i) => expect(p.value).toBe(isDisplayableProperty(props[i]!.name) ? props[i]!.value : '***'));
      }),
    );
  });

  it('masks credentials left in a URL (addresses stored before the URL rule)', () => {
    expect(redactUrl('https://u:p@h.example/x?sig=abc&a=1')).toBe('https://***@h.example/x?sig=***&a=1');
    expect(redactUrl('consumer/inbox')).toBe('consumer/inbox');
  });
});

describe('credentials in endpoint URLs', () => {
  const parse = (a: unknown) => DataAddressSchema.safeParse(a);

  it('refuses user:password@ (and a user alone), without echoing it', () => {
    for (const endpoint of ['https://bob:hunter2secret@h.example/in', 'https://bob@h.example/in', 'ftp://bob:hunter2secret@h.example/']) {
      const r = parse(http(endpoint));
      expect(r.success, endpoint).toBe(false);
      expect(JSON.stringify(r.error?.issues)).toContain('must not carry credentials in the URL');
      expect(JSON.stringify(r.error?.issues)).not.toContain('hunter2secret');
    }
  });

  it('moves credential-like query parameters into query: properties; endpointUrl puts them back', () => {
    const r = DataAddressSchema.parse(http('https://s3.example/b/o?X-Amz-Signature=abc&X-Amz-Credential=cred&partNumber=2&access_token=t&api_key=k'));
    expect(r.endpoint).toBe('https://s3.example/b/o?partNumber=2');
    expect(r.endpointProperties).toEqual([
      { name: 'query:X-Amz-Signature', value: 'abc' },
      { name: 'query:X-Amz-Credential', value: 'cred' },
      { name: 'query:access_token', value: 't' },
      { name: 'query:api_key', value: 'k' },
    ]);
    const back = new URL(endpointUrl(r));
    expect(Object.fromEntries(back.searchParams)).toEqual({ partNumber: '2', 'X-Amz-Signature': 'abc', 'X-Amz-Credential': 'cred', access_token: 't', api_key: 'k' });
    // idempotent: parsing again moves nothing more
    expect(DataAddressSchema.parse(r)).toEqual(r);
    // the counterparty gets the URL whole, in DSP's shape
    expect(toDspDataAddress(r)).toEqual({ '@type': 'DataAddress', endpointType: 'HttpData', endpoint: endpointUrl(r) });
    // File paths are not URLs
    expect(DataAddressSchema.parse({ endpointType: 'File', endpoint: 'inbox/a?token=1' }).endpoint).toBe('inbox/a?token=1');
  });

  it('refuses an ambiguous credential parameter (twice, or also given as a property)', () => {
    expect(parse(http('https://h.example/?sig=a&sig=b')).success).toBe(false);
    expect(parse(http('https://h.example/?sig=a', [{ name: 'query:sig', value: 'b' }])).success).toBe(false);
  });

  it('no credential-like parameter value survives in a stored endpoint (property)', () => {
    const name = fc.constantFrom('token', 'access_token', 'sig', 'signature', 'api_key', 'apikey', 'password', 'secret', 'X-Amz-Signature', 'session', 'auth');
    fc.assert(
      fc.property(fc.uniqueArray(name, { minLength: 1, maxLength: 4 }), fc.stringMatching(/^[A-Za-z0-9]{12,20}$/), (names, secret) => {
        const q = new URLSearchParams(names.map((n, i) => [n, `${secret}${i}`]));
        const stored = DataAddressSchema.parse(http(`https://h.example/p?keep=1&${q.toString()}`));
        expect(stored.endpoint).not.toContain(secret);
        expect(JSON.stringify(redact(stored))).not.toContain(secret);
        expect(new URL(endpointUrl(stored)).searchParams.get(names[0]!)).toBe(`${secret}0`);
      }),
    );
  });
});

describe('counterpartyAddress (a search attribute, readable by anyone who lists workflows)', () => {
  const request = (counterpartyAddress: string) =>
    TransferRequestSchema.safeParse({ connectorId: 'c', counterpartyAddress, agreementId: 'a', assetId: 'x', transferType: 'HttpData-PULL' });
  it('carries no user, password or query', () => {
    expect(request('https://provider.example/dsp').success).toBe(true);
    expect(request('temporal://provider').success).toBe(true);
    expect(request('https://me:pw-secret@provider.example/dsp').success).toBe(false);
    expect(request('https://provider.example/dsp?token=abc').success).toBe(false);
  });
});
