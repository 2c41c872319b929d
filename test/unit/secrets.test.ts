import { describe, expect, it } from 'vitest';
import type { DataAddress } from '../../src/DataAddress.js';
import { SecretBox, SecretBoxError, isSealed } from '../../src/secrets.js';

const address: DataAddress = {
  endpointType: 'HttpData',
  endpoint: 'https://example.org/data',
  endpointProperties: [
    { name: 'authorization', value: 'Bearer abc.def' },
    { name: 'apiKey', value: 'k-123' },
    { name: 'contentType', value: 'application/json' },
  ],
};

describe('SecretBox', () => {
  const box = SecretBox.fromBase64(SecretBox.generateKeyBase64());

  it('seals only secret properties and opens them again', () => {
    const sealed = box.seal(address);
    const byName = Object.fromEntries(sealed.endpointProperties.map((p) => [p.name, p.value]));
    expect(byName.authorization).toMatch(/^enc:v1:[A-Za-z0-9_-]+$/);
    expect(byName.apiKey).toMatch(/^enc:v1:/);
    expect(byName.contentType).toBe('application/json');
    expect(JSON.stringify(sealed)).not.toContain('abc.def');
    expect(box.open(sealed)).toEqual(address);
  });

  it('leaves already sealed values alone and uses a fresh IV each time', () => {
    const once = box.seal(address);
    expect(box.seal(once)).toEqual(once);
    expect(box.sealValue('x')).not.toBe(box.sealValue('x'));
    expect(box.openValue('plain')).toBe('plain');
    expect(isSealed(box.sealValue(''))).toBe(true);
    expect(box.openValue(box.sealValue(''))).toBe('');
  });

  it('detects tampering and a wrong key', () => {
    const sealed = box.sealValue('top secret');
    const raw = Buffer.from(sealed.slice('enc:v1:'.length), 'base64url');
    raw[raw.length - 20]! ^= 1;
    const tampered = `enc:v1:${raw.toString('base64url')}`;
    expect(() => box.openValue(tampered)).toThrow(/wrong key or tampered/);
    const other = SecretBox.fromBase64(SecretBox.generateKeyBase64());
    expect(() => other.openValue(sealed)).toThrow(SecretBoxError);
    expect(() => box.openValue('enc:v1:AAAA')).toThrow(/too short/);
    expect(() => box.openValue('enc:v1:***')).toThrow(/malformed/);
  });

  it('names the broken property, never its value', () => {
    const other = SecretBox.fromBase64(SecretBox.generateKeyBase64());
    const sealed = other.seal(address);
    expect(() => box.open(sealed)).toThrow(/"authorization"/);
  });

  it('accepts base64url keys and refuses bad ones', () => {
    const key = Buffer.alloc(32, 0xfb);
    const a = SecretBox.fromBase64(key.toString('base64url'));
    const b = SecretBox.fromBase64(key.toString('base64'));
    expect(b.openValue(a.sealValue('same key'))).toBe('same key');
    expect(() => SecretBox.fromBase64(Buffer.alloc(16).toString('base64'))).toThrow(/32 bytes/);
    expect(() => SecretBox.fromBase64('not base64!')).toThrow(/base64/);
  });
});
