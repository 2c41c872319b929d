import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { isSecretProperty, type DataAddress } from './DataAddress.js';

/**
 * Symmetric sealing of credential-bearing address properties (AES-256-GCM). Sealed values can pass
 * through workflow inputs, results and histories without exposing tokens; only processes holding
 * the key (data-plane workers) can open them.
 */

const PREFIX = 'enc:v1:';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

export const isSealed = (value: string): boolean => value.startsWith(PREFIX);

export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new SecretBoxError(`SecretBox key must be ${KEY_BYTES} bytes, got ${key.length}`);
    // Own copy: the caller zeroing or reusing its buffer must not change ours.
    this.#key = Buffer.from(key);
  }

  /** Accepts standard or URL-safe base64. The key itself never appears in an error message. */
  static fromBase64(encoded: string): SecretBox {
    const trimmed = encoded.trim();
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new SecretBoxError('SecretBox key is not valid base64');
    return new SecretBox(Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64'));
  }

  static generateKeyBase64(): string {
    return randomBytes(KEY_BYTES).toString('base64');
  }

  /** `enc:v1:<base64url(iv | ciphertext | tag)>`; an already sealed value is returned unchanged. */
  sealValue(plaintext: string): string {
    if (isSealed(plaintext)) return plaintext;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return PREFIX + Buffer.concat([iv, ciphertext, cipher.getAuthTag()]).toString('base64url');
  }

  /** Reverses `sealValue`; a value that is not sealed is returned unchanged (it never was a secret of ours). */
  openValue(value: string): string {
    if (!isSealed(value)) return value;
    const body = value.slice(PREFIX.length);
    if (!/^[A-Za-z0-9_-]*$/.test(body)) throw new SecretBoxError('sealed value is malformed: not base64url');
    const raw = Buffer.from(body, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new SecretBoxError('sealed value is malformed: too short');
    const iv = raw.subarray(0, IV_BYTES);
    const tag = raw.subarray(raw.length - TAG_BYTES);
    const ciphertext = raw.subarray(IV_BYTES, raw.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretBoxError('cannot open sealed value: wrong key or tampered data');
    }
  }

  /** The address with every secret property's value sealed. */
  seal(address: DataAddress): DataAddress {
    return this.#mapSecrets(address, (v) => this.sealValue(v));
  }

  /** The address with every sealed secret property opened. */
  open(address: DataAddress): DataAddress {
    return this.#mapSecrets(address, (v) => this.openValue(v));
  }

  #mapSecrets(address: DataAddress, f: (value: string) => string): DataAddress {
    return {
      ...address,
      endpointProperties: address.endpointProperties.map((p) => {
        if (!isSecretProperty(p.name)) return p;
        try {
          return { name: p.name, value: f(p.value) };
        } catch (err) {
          // Name the property (never its value) so an operator knows which credential is broken.
          throw new SecretBoxError(`endpoint property ${JSON.stringify(p.name)}: ${(err as Error).message}`);
        }
      }),
    };
  }
}
