import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Payload } from '@temporalio/common';
import { DefaultFailureConverter, defaultPayloadConverter } from '@temporalio/common';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec, ENCODING, FAILURE_CONVERTER_PATH, ferryDataConverter, METADATA_KEY_ID, PayloadCodecError } from '../../src/codec.js';
import { ConfigError, ControlPlaneConfigSchema, DataPlaneConfigSchema, parseConfig } from '../../src/config.js';
import { Keyring, keyringFromEnv, requireKeyring } from '../../src/keys.js';
import { dataPlaneKeysFromEnv } from '../../worker/dataPlaneWorker.js';
import { controlPlaneKeysFromEnv } from '../../worker/controlPlaneWorker.js';

const A = Keyring.generate('key-a');
const B = Keyring.generate('key-b');
const meta = (p: Payload, k: string) => (p.metadata?.[k] ? Buffer.from(p.metadata[k]!).toString() : undefined);
const payloadOf = (value: unknown): Payload => defaultPayloadConverter.toPayload(value)!;
const valueOf = (p: Payload): unknown => defaultPayloadConverter.fromPayload(p);

describe('EncryptionCodec', () => {
  const codec = new EncryptionCodec(A);

  it('encrypts each payload under the primary key, names the key, and decodes it back', async () => {
    const secret = { endpoint: 'https://x/in', endpointProperties: [{ name: 'header:Cookie', value: 'session=very-secret-cookie' }] };
    const [encoded] = await codec.encode([payloadOf(secret)]);
    expect(meta(encoded!, 'encoding')).toBe(ENCODING);
    expect(meta(encoded!, METADATA_KEY_ID)).toBe('key-a');
    const raw = Buffer.from(encoded!.data!);
    expect(raw.toString('utf8')).not.toContain('very-secret-cookie');
    expect(raw.toString('latin1')).not.toContain('json/plain');
    expect(valueOf((await codec.decode([encoded!]))[0]!)).toEqual(secret);
  });

  it('round-trips any payloads (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.jsonValue(), { maxLength: 5 }), async (values) => {
        const payloads = values.map(payloadOf);
        const encoded = await codec.encode(payloads);
        expect(encoded).toHaveLength(payloads.length);
        const decoded = await codec.decode(encoded);
        expect(decoded.map(valueOf)).toEqual(payloads.map(valueOf));
      }),
    );
  });

  it('rotates: payloads of A decode with [B, A], new ones are written under B, and [B] alone names the missing key', async () => {
    const [underA] = await codec.encode([payloadOf('old')]);
    const rotated = new EncryptionCodec(A.rotatedTo(B.primary));
    expect(valueOf((await rotated.decode([underA!]))[0]!)).toBe('old');
    const [underB] = await rotated.encode([payloadOf('new')]);
    expect(meta(underB!, METADATA_KEY_ID)).toBe('key-b');
    await expect(new EncryptionCodec(B).decode([underA!])).rejects.toThrow(/key "key-a", which is not in this keyring \(key-b\)/);
  });

  it('refuses tampered data, a relabelled key id and a key of the same id with other bytes', async () => {
    const ring = A.rotatedTo(B.primary);
    const [p] = await new EncryptionCodec(ring).encode([payloadOf('x')]);
    const flipped = Buffer.from(p!.data!);
    flipped[flipped.length - 20]! ^= 1;
    await expect(new EncryptionCodec(ring).decode([{ ...p!, data: flipped }])).rejects.toBeInstanceOf(PayloadCodecError);
    const relabelled = { ...p!, metadata: { ...p!.metadata, [METADATA_KEY_ID]: Buffer.from('key-a') } };
    await expect(new EncryptionCodec(ring).decode([relabelled])).rejects.toThrow(/wrong key or tampered/);
    await expect(new EncryptionCodec(Keyring.generate('key-b')).decode([p!])).rejects.toThrow(/wrong key or tampered/);
    await expect(new EncryptionCodec(ring).decode([{ ...p!, data: new Uint8Array(4) }])).rejects.toThrow(/too short/);
  });

  it('passes payloads it did not encrypt through (histories from before the codec)', async () => {
    const plain = payloadOf({ a: 1 });
    expect(await codec.decode([plain])).toEqual([plain]);
  });
});

describe('ferryDataConverter', () => {
  it('encodes failure messages and stack traces (so the codec encrypts them)', async () => {
    const dc = ferryDataConverter(A);
    expect(dc.payloadCodecs?.[0]).toBeInstanceOf(EncryptionCodec);
    const { failureConverter } = (await import(FAILURE_CONVERTER_PATH)) as { failureConverter: DefaultFailureConverter };
    expect(failureConverter).toBeInstanceOf(DefaultFailureConverter);
    const failure = failureConverter.errorToFailure(new Error('reached https://x?access_token=leaky'), defaultPayloadConverter);
    expect(failure.message).toBe('Encoded failure');
    expect(failure.stackTrace).toBe('');
    expect(JSON.stringify(valueOf(failure.encodedAttributes!))).toContain('leaky');
  });
});

describe('Keyring', () => {
  const k = (id: string) => `${id}:${Buffer.alloc(32, 1).toString('base64')}`;

  it('parses `id:base64` lists (commas, spaces, newlines, comment lines); the first is the primary', () => {
    const ring = Keyring.parse(`# rotated 2025-06\n${k('new')}\n${k('old')}, ${k('older')}\n`, 'test');
    expect(ring.ids).toEqual(['new', 'old', 'older']);
    expect(ring.primary.id).toBe('new');
    expect(Keyring.parse(ring.serialize(), 'again').ids).toEqual(ring.ids);
    // URL-safe base64 too
    expect(Keyring.parse(`u:${Buffer.alloc(32, 255).toString('base64url')}`, 't').get('u')).toEqual(Buffer.alloc(32, 255));
  });

  it.each([
    ['', /no key given/],
    ['nocolon', /entry 1: an entry is `id:base64-key`/],
    [`a:${Buffer.alloc(16).toString('base64')}`, /entry 1 \(a\): a key must be 32 bytes/],
    ['a:not*base64', /entry 1 \(a\): the key is not base64/],
    [`${k('a')},${k('a')}`, /key id "a" appears twice/],
    [`bad$id:${Buffer.alloc(32).toString('base64')}`, /entry 1: a key id uses/],
  ])('refuses %j with an error naming the source', (text, message) => {
    expect(() => Keyring.parse(text, 'FERRY_CODEC_KEYS')).toThrow(ConfigError);
    expect(() => Keyring.parse(text, 'FERRY_CODEC_KEYS')).toThrow(message);
    expect(() => Keyring.parse(text, 'FERRY_CODEC_KEYS')).toThrow(/^invalid keys in FERRY_CODEC_KEYS: /);
  });

  it('never puts a key into an error message (nor a key pasted without its id)', () => {
    const short = Buffer.alloc(31, 7).toString('base64');
    expect(() => Keyring.parse(`a:${short}`, 'X')).toThrow(expect.objectContaining({ message: expect.not.stringContaining(short) }));
    const bare = Buffer.alloc(32, 9).toString('base64url');
    expect(() => Keyring.parse(bare, 'X')).toThrow(expect.objectContaining({ message: expect.not.stringContaining(bare) }));
  });

  it('reads NAME or NAME_FILE; both, an unreadable file or none are clear errors', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-keys-'));
    const file = path.join(dir, 'codec.keys');
    writeFileSync(file, `${k('f')}\n`);
    expect(keyringFromEnv('FERRY_CODEC_KEYS', { FERRY_CODEC_KEYS: k('e') })!.ids).toEqual(['e']);
    expect(keyringFromEnv('FERRY_CODEC_KEYS', { FERRY_CODEC_KEYS_FILE: file })!.ids).toEqual(['f']);
    expect(keyringFromEnv('FERRY_CODEC_KEYS', {})).toBeUndefined();
    expect(() => keyringFromEnv('FERRY_CODEC_KEYS', { FERRY_CODEC_KEYS: k('e'), FERRY_CODEC_KEYS_FILE: file })).toThrow('set FERRY_CODEC_KEYS or FERRY_CODEC_KEYS_FILE, not both');
    expect(() => keyringFromEnv('FERRY_CODEC_KEYS', { FERRY_CODEC_KEYS_FILE: path.join(dir, 'missing') })).toThrow(/cannot read FERRY_CODEC_KEYS_FILE=.*missing/);
    expect(() => keyringFromEnv('FERRY_EDR_KEYS', { FERRY_EDR_KEYS_FILE: file.replace('codec', 'nope') })).toThrow(/FERRY_EDR_KEYS_FILE/);
    expect(() => requireKeyring('FERRY_EDR_KEYS', 'EDR signing keys', {})).toThrow(/no EDR signing keys: set FERRY_EDR_KEYS .* or FERRY_EDR_KEYS_FILE/);
  });
});

describe('worker configs', () => {
  it('refuse keys in a config file, naming the variable that holds them now', () => {
    const cp = { connectorId: 'c', dataPlanes: [{ id: 'dp' }], secretKey: 'AAAA' };
    expect(() => parseConfig(ControlPlaneConfigSchema, cp, 'cp.json')).toThrow(/keys are not read from config files: remove it and set FERRY_CODEC_KEYS or FERRY_CODEC_KEYS_FILE[\s\S]*at secretKey/);
    const dp = { instanceId: 'dp', fileRoot: '/tmp/x', callbackKey: 'AAAA', publicApi: { tokenKey: 'AAAA' } };
    expect(() => parseConfig(DataPlaneConfigSchema, dp, 'dp.json')).toThrow(/FERRY_CALLBACK_KEYS[\s\S]*FERRY_EDR_KEYS|FERRY_EDR_KEYS[\s\S]*FERRY_CALLBACK_KEYS/);
    expect(parseConfig(DataPlaneConfigSchema, { instanceId: 'dp', fileRoot: '/tmp/x' }, 'dp.json').instanceId).toBe('dp');
  });

  it('a worker names every key ring it lacks at once; EDR and callback keys only where they are used', () => {
    const dp = DataPlaneConfigSchema.parse({
      instanceId: 'dp',
      fileRoot: '/tmp/x',
      publicApi: {},
      provisioners: [{ kind: 'http', name: 's', url: 'http://127.0.0.1:9', side: 'destination', endpointTypes: ['File'] }],
    });
    expect(() => dataPlaneKeysFromEnv(dp, {})).toThrow(/FERRY_CODEC_KEYS[\s\S]*FERRY_EDR_KEYS[\s\S]*FERRY_CALLBACK_KEYS/);
    const codec = Keyring.generate('c').serialize();
    const plain = DataPlaneConfigSchema.parse({ instanceId: 'dp', fileRoot: '/tmp/x' });
    expect(dataPlaneKeysFromEnv(plain, { FERRY_CODEC_KEYS: codec })).toEqual({ codec: expect.any(Keyring) });
    expect(() => dataPlaneKeysFromEnv(dp, { FERRY_CODEC_KEYS: codec, FERRY_EDR_KEYS: Keyring.generate('e').serialize() })).toThrow(/^no callback keys for the http provisioners of dp/);
    expect(() => controlPlaneKeysFromEnv({})).toThrow(/no payload codec keys: set FERRY_CODEC_KEYS/);
  });
});
