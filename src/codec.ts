import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import { Keyring } from './keys.js';

/**
 * The payload codec of every ferry client and worker: each payload (workflow inputs and results,
 * activity inputs and results, signals, updates, queries, memos, failure messages and stack traces)
 * is encrypted with AES-256-GCM under the keyring's primary key before it leaves the process, so
 * the Temporal server stores and shows only ciphertext. The key id travels in the payload's
 * metadata; decoding looks it up in the ring, so payloads written under an older key stay readable
 * while keys rotate. Workflow ids, types, task queues and search attributes are not payloads and
 * stay readable in the Web UI.
 */

export const ENCODING = 'binary/encrypted';
export const METADATA_ENCODING_KEY = 'encoding';
export const METADATA_KEY_ID = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
// a CommonJS module: its namespace is the default export under Node's ESM loader
const { Payload: PayloadProto } = proto.temporal.api.common.v1;

export class PayloadCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadCodecError';
  }
}

/** Binds the ciphertext to the key id it claims, so a payload cannot be relabelled. */
const aad = (keyId: string): Buffer => Buffer.from(`ferry-codec-v1:${keyId}`, 'utf8');
const text = (b: Uint8Array | null | undefined): string | undefined => (b ? Buffer.from(b).toString('utf8') : undefined);

export class EncryptionCodec implements PayloadCodec {
  constructor(readonly keyring: Keyring) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const { id, key } = this.keyring.primary;
    return payloads.map((payload) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad(id));
      const plain = PayloadProto.encode(payload).finish();
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { [METADATA_ENCODING_KEY]: Buffer.from(ENCODING), [METADATA_KEY_ID]: Buffer.from(id) },
        data: new Uint8Array(sealed),
      };
    });
  }

  /** Payloads not encrypted by us (written before the codec was on) pass through as they are. */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (text(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCODING) return payload;
      const id = text(payload.metadata?.[METADATA_KEY_ID]);
      if (!id) throw new PayloadCodecError('encrypted payload without an encryption-key-id');
      const key = this.keyring.get(id);
      // the id is no secret, and naming it tells the operator which key to put back into the ring
      if (!key) throw new PayloadCodecError(`payload encrypted with key ${JSON.stringify(id)}, which is not in this keyring (${this.keyring.ids.join(', ')})`);
      const data = Buffer.from(payload.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadCodecError('encrypted payload is too short');
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
        decipher.setAAD(aad(id));
        decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
        const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
        return PayloadProto.decode(plain) as Payload;
      } catch {
        throw new PayloadCodecError(`cannot decrypt a payload with key ${JSON.stringify(id)}: wrong key or tampered data`);
      }
    });
  }
}

/**
 * The failure converter every client and worker loads (and every workflow bundle embeds): error
 * messages and stack traces become an encoded payload, so the codec encrypts them too. A CommonJS
 * file, because the SDK `require()`s it in the worker and bundles it into the workflow sandbox.
 */
export const FAILURE_CONVERTER_PATH = createRequire(import.meta.url).resolve('./failureConverter.cjs');

/** The data converter of every ferry client and worker: the codec, and failures encoded. */
export function ferryDataConverter(keys: Keyring | PayloadCodec): DataConverter {
  return {
    payloadCodecs: [keys instanceof Keyring ? new EncryptionCodec(keys) : keys],
    failureConverterPath: FAILURE_CONVERTER_PATH,
  };
}
