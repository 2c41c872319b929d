import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import { z } from 'zod';

/**
 * The DPS Token Renewal profile, provider side: a consumer renews a pull's access token with the
 * OAuth 2 `refresh_token` grant, authenticating with a JWT it signs itself as its DID (`iss` = `sub`
 * = its DID, `aud` = the provider's DID, `token` = the access token of the grant, `kid` naming a key
 * of its DID document). We resolve the DID document (`did:web` only), verify the JWT with that key,
 * and check that the DID is the one the refresh token was issued to.
 */
export class ClientAuthInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClientAuthInvalid';
  }
}

const DidDocumentSchema = z.object({
  id: z.string(),
  verificationMethod: z.array(z.object({ id: z.string(), publicKeyJwk: z.record(z.string(), z.unknown()).optional() })).default([]),
});

/** `did:web:host%3Aport:a:b` → `https://host:port/a/b/did.json` (`…/.well-known/did.json` without a path). */
export function didWebUrl(did: string, opts: { allowHttp?: boolean } = {}): string {
  const m = /^did:web:([^:]+)((?::[^:]+)*)$/.exec(did);
  if (!m) throw new ClientAuthInvalid(`not a did:web: ${did}`);
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new ClientAuthInvalid(`malformed did:web ${did}`);
    }
  };
  const host = decode(m[1]!);
  if (!/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) throw new ClientAuthInvalid(`invalid did:web host in ${did}`);
  const path = m[2] ? m[2].split(':').slice(1).map((s) => encodeURIComponent(decode(s))).join('/') : '.well-known';
  return `${opts.allowHttp ? 'http' : 'https'}://${host}/${path}/did.json`;
}

async function resolveDidWeb(did: string, allowHttp: boolean, timeoutMs: number): Promise<z.infer<typeof DidDocumentSchema>> {
  let res: Response;
  try {
    res = await fetch(didWebUrl(did, { allowHttp }), { redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    if (e instanceof ClientAuthInvalid) throw e;
    throw new ClientAuthInvalid(`cannot resolve ${did}: ${(e as Error).message}`);
  }
  const text = await res.text().catch(() => '');
  if (!res.ok) throw new ClientAuthInvalid(`cannot resolve ${did}: HTTP ${res.status}`);
  if (text.length > 256 * 1024) throw new ClientAuthInvalid(`DID document of ${did} is too large`);
  let doc;
  try {
    doc = DidDocumentSchema.parse(JSON.parse(text));
  } catch {
    throw new ClientAuthInvalid(`DID document of ${did} is malformed`);
  }
  if (doc.id !== did) throw new ClientAuthInvalid(`DID document of ${did} names ${doc.id}`);
  return doc;
}

/**
 * Verifies a renewal's client JWT. `boundTo`: the DID the grant was issued to; `audience`: our
 * DID (the provider participant of the flow); `tokenId`: the grant's token id (the `token` claim's
 * access token must belong to it).
 */
export async function verifyClientAssertion(
  jwt: string,
  expected: { boundTo: string; audience: string; tokenId: string },
  opts: { allowHttp?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  let header;
  let claims;
  try {
    header = decodeProtectedHeader(jwt);
    claims = decodeJwt(jwt);
  } catch {
    throw new ClientAuthInvalid('client authentication is not a JWT');
  }
  if (claims.iss !== expected.boundTo || claims.sub !== expected.boundTo) throw new ClientAuthInvalid('client authentication is not from the party the token was issued to');
  if (!header.kid || !header.alg || header.alg === 'none' || header.alg.startsWith('HS')) throw new ClientAuthInvalid('client authentication needs a kid and an asymmetric alg');
  const doc = await resolveDidWeb(expected.boundTo, opts.allowHttp ?? false, opts.timeoutMs ?? 5000);
  const kid = header.kid.startsWith('#') ? `${doc.id}${header.kid}` : header.kid;
  const method = doc.verificationMethod.find((m) => m.id === kid || `${doc.id}${m.id}` === kid);
  if (!method?.publicKeyJwk) throw new ClientAuthInvalid(`no key ${header.kid} in the DID document of ${doc.id}`);
  try {
    const key = await importJWK(method.publicKeyJwk as JWK, header.alg);
    await jwtVerify(jwt, key, { issuer: expected.boundTo, subject: expected.boundTo, audience: expected.audience, requiredClaims: ['exp', 'iat'], clockTolerance: 5 });
  } catch (e) {
    throw new ClientAuthInvalid(`client authentication rejected: ${(e as Error).message}`);
  }
  const token = claims.token;
  if (typeof token !== 'string') throw new ClientAuthInvalid('client authentication names no access token');
  let jti: unknown;
  try {
    jti = decodeJwt(token).jti;
  } catch {
    throw new ClientAuthInvalid('client authentication names no access token of ours');
  }
  if (jti !== expected.tokenId) throw new ClientAuthInvalid('the access token named is not of this grant');
}
