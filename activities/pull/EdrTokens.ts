import { hkdfSync, randomUUID } from 'node:crypto';
import { errors, jwtVerify, SignJWT } from 'jose';

/**
 * The tokens of endpoint data references (EDRs): short-lived JWTs (HS256) that a data plane's public
 * endpoint issues and checks itself. A token names the DataFlow it opens (`flow`, `wf`), who it was
 * issued to (`aud`) and the issuing data-plane instance (`iss`); its `jti` is what deprovisioning
 * revokes. Signature and expiry are checked here; revocation is the DataFlow's word (see publicApiServer).
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

export class EdrTokens {
  readonly #key: Uint8Array;

  constructor(
    key: Uint8Array,
    /** The issuing data-plane instance: a token only opens flows on the instance that issued it. */
    readonly issuer: string,
    readonly ttlMs: number,
  ) {
    if (key.length < 32) throw new Error('EDR signing key must have at least 32 bytes');
    this.#key = new Uint8Array(key);
  }

  /** The signing key of an instance without its own: derived from the secret key, so it survives a restart. */
  static deriveKey(secretKeyBase64: string): Uint8Array {
    return new Uint8Array(hkdfSync('sha256', Buffer.from(secretKeyBase64, 'base64'), Buffer.alloc(0), 'ferry-edr-v1', 32));
  }

  async issue(req: { flowId: string; workflowId: string; audience?: string }, now = new Date()): Promise<{ token: string; claims: EdrClaims }> {
    const tokenId = randomUUID();
    const expiresAt = new Date(now.getTime() + this.ttlMs);
    const audience = req.audience ?? ANY_AUDIENCE;
    const token = await new SignJWT({ flow: req.flowId, wf: req.workflowId })
      .setProtectedHeader({ alg: ALG, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(audience)
      .setSubject(req.flowId)
      .setJti(tokenId)
      .setIssuedAt(Math.floor(now.getTime() / 1000))
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(this.#key);
    return { token, claims: { tokenId, flowId: req.flowId, workflowId: req.workflowId, audience, expiresAt } };
  }

  /** The claims of a token this instance issued and that has not expired; EdrTokenInvalid otherwise. */
  async verify(token: string, now = new Date()): Promise<EdrClaims> {
    try {
      const { payload } = await jwtVerify(token, this.#key, { algorithms: [ALG], issuer: this.issuer, currentDate: now, clockTolerance: 0 });
      const { flow, wf, jti, aud, exp } = payload as { flow?: unknown; wf?: unknown; jti?: unknown; aud?: unknown; exp?: number };
      if (typeof flow !== 'string' || typeof wf !== 'string' || typeof jti !== 'string' || typeof aud !== 'string' || !exp) {
        throw new EdrTokenInvalid('token lacks its flow claims');
      }
      return { tokenId: jti, flowId: flow, workflowId: wf, audience: aud, expiresAt: new Date(exp * 1000) };
    } catch (e) {
      if (e instanceof EdrTokenInvalid) throw e;
      if (e instanceof errors.JWTExpired) throw new EdrTokenInvalid('token expired');
      if (e instanceof errors.JOSEError) throw new EdrTokenInvalid(`invalid token (${e.code})`);
      throw e;
    }
  }
}
