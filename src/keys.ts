import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './config.js';

/**
 * Keys, one ring per purpose: payload codec keys (every worker and client of a connector), the EDR
 * signing keys of one data plane, the callback HMAC keys of one data plane. A ring is an ordered
 * list of `id:base64` entries; the first is the primary (it encrypts or signs), every one of them
 * still decrypts or verifies, so a key rotates without stopping a transfer:
 *
 *   1. put the new key first, keep the old one after it: `new:…,old:…`, restart the processes;
 *   2. once nothing signed or encrypted with the old key is needed any more, drop it.
 *
 * Keys come from the environment or from files (`FERRY_CODEC_KEYS` or `FERRY_CODEC_KEYS_FILE`, …),
 * never from a worker's config file.
 */

export const KEY_BYTES = 32;
const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface KeyEntry {
  id: string;
  key: Buffer;
}

const base64Key = z
  .string()
  .regex(/^[A-Za-z0-9+/_-]+={0,2}$/, 'the key is not base64')
  .transform((s) => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64'))
  .refine((b) => b.length === KEY_BYTES, { message: `a key must be ${KEY_BYTES} bytes (base64 of ${KEY_BYTES} random bytes)` });

const EntrySchema = z
  .string()
  .transform((s, ctx) => {
    const i = s.indexOf(':');
    if (i < 0) {
      ctx.addIssue({ code: 'custom', message: 'an entry is `id:base64-key`' });
      return z.NEVER;
    }
    return { id: s.slice(0, i), key: s.slice(i + 1) };
  })
  .pipe(z.object({ id: z.string().regex(KEY_ID, 'a key id uses letters, digits, ".", "_" and "-" (at most 64)'), key: base64Key }));

const RingSchema = z
  .array(EntrySchema)
  .min(1, 'no key given')
  .superRefine((entries, ctx) => {
    const seen = new Set<string>();
    for (const e of entries) {
      if (seen.has(e.id)) ctx.addIssue({ code: 'custom', message: `key id ${JSON.stringify(e.id)} appears twice` });
      seen.add(e.id);
    }
  });

/** An ordered set of keys with ids; the first is the primary. */
export class Keyring {
  readonly #entries: KeyEntry[];

  constructor(entries: KeyEntry[]) {
    if (entries.length === 0) throw new Error('a keyring needs at least one key');
    if (new Set(entries.map((e) => e.id)).size !== entries.length) throw new Error('key ids must be unique');
    for (const e of entries) {
      if (!KEY_ID.test(e.id)) throw new Error(`invalid key id ${JSON.stringify(e.id)}`);
      if (e.key.length !== KEY_BYTES) throw new Error(`key ${e.id} must be ${KEY_BYTES} bytes`);
    }
    // own copies: a caller reusing its buffers must not change ours
    this.#entries = entries.map((e) => ({ id: e.id, key: Buffer.from(e.key) }));
  }

  /**
   * Parses `id:base64,id:base64` (commas, spaces or newlines between entries; `#` starts a comment
   * line in a file). `source` names where the text came from in every error (never a key).
   */
  static parse(text: string, source: string): Keyring {
    const entries = text
      .split('\n')
      .filter((line) => !line.trim().startsWith('#'))
      .join(',')
      .split(/[,\s]+/)
      .filter(Boolean);
    const parsed = RingSchema.safeParse(entries);
    if (!parsed.success) {
      // an issue's path is the entry's index: name it (1-based) and its id, never the key
      const problems = parsed.error.issues.map((i) => {
        const n = typeof i.path[0] === 'number' ? i.path[0] : undefined;
        // only a real `id:` prefix is named: a bare entry may be a key pasted without its id
        const entry = n === undefined ? undefined : entries[n];
        const id = entry?.includes(':') ? entry.split(':')[0] : undefined;
        return n === undefined ? i.message : `entry ${n + 1}${id && KEY_ID.test(id) ? ` (${id})` : ''}: ${i.message}`;
      });
      throw new ConfigError(`invalid keys in ${source}: ${problems.join('; ')}`);
    }
    return new Keyring(parsed.data);
  }

  /** A ring of one fresh random key. */
  static generate(id = newKeyId()): Keyring {
    return new Keyring([{ id, key: randomBytes(KEY_BYTES) }]);
  }

  get primary(): KeyEntry {
    return this.#entries[0]!;
  }

  get ids(): string[] {
    return this.#entries.map((e) => e.id);
  }

  get(id: string): Buffer | undefined {
    return this.#entries.find((e) => e.id === id)?.key;
  }

  /** This ring with `next` put first (the new primary), the current keys kept for reading. */
  rotatedTo(next: KeyEntry): Keyring {
    return new Keyring([next, ...this.#entries.filter((e) => e.id !== next.id)]);
  }

  /** The `id:base64,…` text `parse` reads: what goes into the env variable or the file. */
  serialize(): string {
    return this.#entries.map((e) => `${e.id}:${e.key.toString('base64')}`).join(',');
  }
}

/** A key id naming when the key was made (`k20250611-1a2b3c`): old and new keys are told apart in a listing. */
export function newKeyId(now = new Date()): string {
  return `k${now.toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(3).toString('hex')}`;
}

/** The key purposes and the environment variables that carry their rings. */
export const KEY_VARIABLES = {
  codec: 'FERRY_CODEC_KEYS',
  edr: 'FERRY_EDR_KEYS',
  callback: 'FERRY_CALLBACK_KEYS',
} as const;
export type KeyPurpose = keyof typeof KEY_VARIABLES;

/**
 * The ring of `NAME` (the keys themselves) or `NAME_FILE` (a file holding them); undefined when
 * neither is set. Both set, an unreadable file or a bad entry is a ConfigError naming the variable.
 */
export function keyringFromEnv(name: string, env: NodeJS.ProcessEnv = process.env): Keyring | undefined {
  const inline = env[name];
  const file = env[`${name}_FILE`];
  if (inline && file) throw new ConfigError(`set ${name} or ${name}_FILE, not both`);
  if (inline) return Keyring.parse(inline, name);
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${name}_FILE=${file}: ${(e as Error).message}`);
  }
  return Keyring.parse(text, `${name}_FILE=${file}`);
}

/** Like `keyringFromEnv`, but a missing ring is an error that says what to set and why. */
export function requireKeyring(name: string, why: string, env: NodeJS.ProcessEnv = process.env): Keyring {
  const ring = keyringFromEnv(name, env);
  if (!ring) {
    throw new ConfigError(
      `no ${why}: set ${name} (\`id:base64-key[,id:base64-key…]\`, the first encrypts or signs) or ${name}_FILE (a file with the same); ` +
        `\`npm run ferry -- keygen\` makes a key`,
    );
  }
  return ring;
}
