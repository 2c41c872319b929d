import { randomUUID } from 'node:crypto';
import { errors, jwtVerify, SignJWT, type JWTHeaderParameters } from 'jose';
import type { Keyring } from '../../src/keys.js';

/**
 * The tokens of endpoint data references (EDRs): short-lived JWTs (HS256) that a data plane's public
 * endpoint issues and checks itself. A token names the DataFlow it opens (`flow`, `wf`), who it was
 * issued to (`aud`), the issuing data-plane instance (`iss`) and its use (`use`: access or refresh);
 * its `jti` is what deprovisioning revokes, for the access and refresh tokens alike. Signature and
 * expiry are checked here; revocation is the DataFlow's word (see publicApiServer).
 *
 * The signing keys are the data plane's own (`FERRY_EDR_KEYS`): the primary signs and names itself in
 * the JWT header (`kid`); every key of the ring verifies, so tokens issued before a rotation stay
 * good until they expire.
 */
export interface EdrClaims {
  tokenId: string;
  flowId: string;
  workflowId: string;
  audience: string;
  expiresAt: Date;
}

/** Why a token was not accepted; the public endpoint answers 401 with it. */
export class EdrTokenInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EdrTokenInvalid';
  }
}

const ALG = 'HS256';
/** The audience of a token issued without one (a pull started with no counterparty named). */
export const ANY_AUDIENCE = 'urn:ferry:any';

/** An access token opens the data; a refresh token (longer-lived) only buys a new access token. */
export type TokenUse = 'access' | 'refresh';

export interface IssuedEdrTokens {
  token: string;
  refreshToken: string;
  claims: EdrClaims;
  refreshExpiresAt: Date;
}

export class EdrTokens {
  readonly #keys: Keyring;

  constructor(
    keys: Keyring,
    /** The issuing data-plane instance: a token only opens flows on the instance that issued it. */
    readonly issuer: string,
    readonly ttlMs: number,
    readonly refreshTtlMs: number = 24 * 3_600_000,
  ) {
    this.#keys = keys;
  }

  /** A fresh token pair for a flow, under a new token id (what a release revokes). */
  issue(req: { flowId: string; workflowId: string; audience?: string }, now = new Date()): Promise<IssuedEdrTokens> {
    return this.renew({ tokenId: randomUUID(), flowId: req.flowId, workflowId: req.workflowId, audience: req.audience ?? ANY_AUDIENCE }, now);
  }

  /** New expiries for the same token id: a long pull stays open while its provision is held, and a release still revokes it. */
  async renew(claims: Omit<EdrClaims, 'expiresAt'>, now = new Date()): Promise<IssuedEdrTokens> {
    // whole seconds, as the JWT's exp says: the claims a verify reads back are these
    const expiresAt = new Date(Math.floor((now.getTime() + this.ttlMs) / 1000) * 1000);
    const refreshExpiresAt = new Date(Math.floor((now.getTime() + this.refreshTtlMs) / 1000) * 1000);
    const [token, refreshToken] = await Promise.all([this.#sign(claims, 'access', now, expiresAt), this.#sign(claims, 'refresh', now, refreshExpiresAt)]);
    return { token, refreshToken, claims: { ...claims, expiresAt }, refreshExpiresAt };
  }

  #sign(claims: Omit<EdrClaims, 'expiresAt'>, use: TokenUse, now: Date, expiresAt: Date): Promise<string> {
    const { id, key } = this.#keys.primary;
    // a nonce: a renewal within the same second still hands out a token different from the one it replaces
    return new SignJWT({ flow: claims.flowId, wf: claims.workflowId, use, nonce: randomUUID() })
      .setProtectedHeader({ alg: ALG, typ: 'JWT', kid: id })
      .setIssuer(this.issuer)
      .setAudience(claims.audience)
      .setSubject(claims.flowId)
      .setJti(claims.tokenId)
      .setIssuedAt(Math.floor(now.getTime() / 1000))
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(new Uint8Array(key));
  }

  /** The claims of a token of `use` this instance issued and that has not expired; EdrTokenInvalid otherwise. */
  async verify(token: string, use: TokenUse = 'access', now = new Date()): Promise<EdrClaims> {
    try {
      const keyOf = (header: JWTHeaderParameters): Uint8Array => {
        const key = header.kid === undefined ? undefined : this.#keys.get(header.kid);
        if (!key) throw new EdrTokenInvalid('token signed with an unknown key');
        return new Uint8Array(key);
      };
      const { payload } = await jwtVerify(token, keyOf, { algorithms: [ALG], issuer: this.issuer, currentDate: now, clockTolerance: 0 });
      const p = payload as { flow?: unknown; wf?: unknown; jti?: unknown; aud?: unknown; exp?: number; use?: unknown };
      if (typeof p.flow !== 'string' || typeof p.wf !== 'string' || typeof p.jti !== 'string' || typeof p.aud !== 'string' || !p.exp) {
        throw new EdrTokenInvalid('token lacks its flow claims');
      }
      if (p.use !== use) throw new EdrTokenInvalid(`not ${use === 'access' ? 'an' : 'a'} ${use} token`);
      return { tokenId: p.jti, flowId: p.flow, workflowId: p.wf, audience: p.aud, expiresAt: new Date(p.exp * 1000) };
    } catch (e) {
      if (e instanceof EdrTokenInvalid) throw e;
      if (e instanceof errors.JWTExpired) throw new EdrTokenInvalid('token expired');
      if (e instanceof errors.JOSEError) throw new EdrTokenInvalid(`invalid token (${e.code})`);
      throw e;
    }
  }
}
