import { randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../src/config.js';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, importJWK, jwtVerify, SignJWT, type JWK, type JWTVerifyGetKey } from 'jose';

/**
 * Authorization between DPS parties. Inbound, a caller is identified by a static bearer token it was
 * given, or by a self-signed JWT of the spec's `oauth2_client_credentials` profile (iss, sub = its
 * id, aud = our id, iat, exp; signature checked with the keys it registered). ferry never skips
 * the signature check: a peer without keys can only use a static token. Outbound, we present the
 * peer's static token or our own self-signed JWT.
 */
export interface DpsPeer {
  id: string;
  inboundToken?: string | undefined;
  jwks?: { keys: Record<string, unknown>[] } | undefined;
  jwksUri?: string | undefined;
  outboundToken?: string | undefined;
}

const TOKEN_TTL_S = 300;

export class DpsAuth {
  readonly #remote = new Map<string, JWTVerifyGetKey>();
  /** jti → expiry (ms): a token is accepted once (replay detection), remembered until it expires. */
  readonly #seen = new Map<string, number>();
  #signingKey: Promise<{ key: CryptoKey | Uint8Array; alg: string; kid?: string }> | undefined;

  constructor(
    /** Our id: the `aud` peers' tokens must carry, and the `iss`/`sub` of ours. */
    readonly selfId: string,
    signingJwk?: Record<string, unknown>,
  ) {
    if (signingJwk) {
      const jwk = signingJwk as JWK;
      const alg = jwk.alg ?? (jwk.kty === 'EC' ? 'ES256' : jwk.kty === 'OKP' ? 'EdDSA' : 'RS256');
      this.#signingKey = importJWK(jwk, alg).then((key) => ({ key, alg, ...(jwk.kid ? { kid: jwk.kid } : {}) }));
    }
  }

  /** Which of `peers` sent this `Authorization` header; undefined for anyone else. Never throws on bad input. */
  async identify(header: string | undefined, peers: DpsPeer[]): Promise<DpsPeer | undefined> {
    const token = (header ?? '').replace(/^Bearer\s+/i, '').trim();
    if (!token) return undefined;
    const given = Buffer.from(token);
    const byToken = peers.find((p) => p.inboundToken && safeEqual(Buffer.from(p.inboundToken), given));
    if (byToken) return byToken;
    let sub: unknown;
    try {
      sub = decodeJwt(token).sub;
    } catch {
      return undefined;
    }
    const peer = peers.find((p) => p.id === sub && (p.jwks || p.jwksUri));
    if (!peer) return undefined;
    try {
      const { payload } = await jwtVerify(token, this.#keysOf(peer), {
        audience: this.selfId,
        subject: peer.id,
        requiredClaims: ['iss', 'sub', 'aud', 'iat', 'exp'],
        clockTolerance: 5,
      });
      if (payload.jti) {
        const now = Date.now();
        for (const [jti, exp] of this.#seen) if (exp < now) this.#seen.delete(jti);
        if (this.#seen.has(payload.jti)) return undefined;
        this.#seen.set(payload.jti, (payload.exp ?? 0) * 1000 + 5000);
      }
      return peer;
    } catch {
      return undefined;
    }
  }

  /** The `Authorization` header we present to `peer`, if any. */
  async authorizationFor(peer: Pick<DpsPeer, 'id' | 'outboundToken'>): Promise<string | undefined> {
    if (peer.outboundToken) return `Bearer ${peer.outboundToken}`;
    if (!this.#signingKey) return undefined;
    const { key, alg, kid } = await this.#signingKey;
    const now = Math.floor(Date.now() / 1000);
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) })
      .setIssuer(this.selfId)
      .setSubject(this.selfId)
      .setAudience(peer.id)
      .setIssuedAt(now)
      .setExpirationTime(now + TOKEN_TTL_S)
      .setJti(randomUUID())
      .sign(key);
    return `Bearer ${jwt}`;
  }

  #keysOf(peer: DpsPeer): JWTVerifyGetKey {
    if (peer.jwks) return createLocalJWKSet(peer.jwks as { keys: JWK[] });
    let remote = this.#remote.get(peer.jwksUri!);
    if (!remote) this.#remote.set(peer.jwksUri!, (remote = createRemoteJWKSet(new URL(peer.jwksUri!))));
    return remote;
  }
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Where a DPS party's private signing key (a JWK) comes from: the environment or a file, never a config file. */
export const DPS_SIGNING_KEY_VARIABLE = 'FERRY_DPS_SIGNING_KEY';

/** The private JWK of `FERRY_DPS_SIGNING_KEY` (JSON) or `FERRY_DPS_SIGNING_KEY_FILE`; undefined when neither is set. */
export function dpsSigningKeyFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> | undefined {
  const name = DPS_SIGNING_KEY_VARIABLE;
  const inline = env[name];
  const file = env[`${name}_FILE`];
  if (inline && file) throw new ConfigError(`set ${name} or ${name}_FILE, not both`);
  let text = inline;
  if (file) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read ${name}_FILE=${file}: ${(e as Error).message}`);
    }
  }
  if (!text) return undefined;
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new ConfigError(`${name} is not a JWK (JSON)`);
  }
  const k = jwk as { kty?: unknown; d?: unknown };
  if (!jwk || typeof jwk !== 'object' || typeof k.kty !== 'string' || typeof k.d !== 'string') throw new ConfigError(`${name} must be a private JWK (with kty and d)`);
  return jwk as Record<string, unknown>;
}
