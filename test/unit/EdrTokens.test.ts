import { describe, expect, it } from 'vitest';
import { ANY_AUDIENCE, EdrTokenInvalid, EdrTokens } from '../../activities/pull/EdrTokens.js';
import { Keyring } from '../../src/keys.js';
import { parseRange } from '../../worker/publicApiServer.js';

const keyA = Keyring.generate('a');
const tokens = new EdrTokens(keyA, 'dp-1', 60_000);
const flow = { flowId: 'f-1', workflowId: 'dataflow-p-f-1', audience: 'http://consumer/dsp' };

describe('EDR tokens', () => {
  it('round-trips the flow, audience and a fresh token id, and expires after the ttl', async () => {
    const now = new Date('2026-01-01T00:00:00Z');
    const a = await tokens.issue(flow, now);
    const b = await tokens.issue(flow, now);
    expect(a.claims.tokenId).not.toBe(b.claims.tokenId);
    expect(a.claims.expiresAt.toISOString()).toBe('2026-01-01T00:01:00.000Z');
    expect(await tokens.verify(a.token, 'access', new Date(now.getTime() + 59_000))).toEqual(a.claims);
    await expect(tokens.verify(a.token, 'access', new Date(now.getTime() + 61_000))).rejects.toThrow(new EdrTokenInvalid('token expired'));
  });

  it('keeps access and refresh tokens apart; a renewal keeps the token id (what a release revokes) and moves the expiry', async () => {
    const now = new Date('2026-01-01T00:00:00Z');
    const issued = await tokens.issue(flow, now);
    await expect(tokens.verify(issued.refreshToken, 'access', now)).rejects.toThrow(new EdrTokenInvalid('not an access token'));
    await expect(tokens.verify(issued.token, 'refresh', now)).rejects.toThrow(new EdrTokenInvalid('not a refresh token'));
    const refreshClaims = await tokens.verify(issued.refreshToken, 'refresh', new Date(now.getTime() + 3_600_000));
    expect(refreshClaims.tokenId).toBe(issued.claims.tokenId);
    const later = new Date(now.getTime() + 3_600_000);
    const renewed = await tokens.renew(refreshClaims, later);
    expect(renewed.claims.tokenId).toBe(issued.claims.tokenId);
    expect(renewed.claims.expiresAt.toISOString()).toBe('2026-01-01T01:01:00.000Z');
    expect((await tokens.verify(renewed.token, 'access', later)).tokenId).toBe(issued.claims.tokenId);
    // the refresh token lives a day by default
    await expect(tokens.verify(issued.refreshToken, 'refresh', new Date(now.getTime() + 25 * 3_600_000))).rejects.toThrow(new EdrTokenInvalid('token expired'));
  });

  it('refuses a token of another key, another instance, or a tampered one', async () => {
    const { token } = await tokens.issue(flow);
    await expect(new EdrTokens(Keyring.generate('b'), 'dp-1', 60_000).verify(token)).rejects.toBeInstanceOf(EdrTokenInvalid);
    // same id, other key bytes: the signature decides
    await expect(new EdrTokens(Keyring.generate('a'), 'dp-1', 60_000).verify(token)).rejects.toBeInstanceOf(EdrTokenInvalid);
    await expect(new EdrTokens(keyA, 'dp-2', 60_000).verify(token)).rejects.toBeInstanceOf(EdrTokenInvalid);
    const [h, p, s] = token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, wf: 'dataflow-p-other' })).toString('base64url')}.${s}`;
    await expect(tokens.verify(forged)).rejects.toBeInstanceOf(EdrTokenInvalid);
    await expect(tokens.verify('not-a-jwt')).rejects.toBeInstanceOf(EdrTokenInvalid);
  });

  it('names an explicit audience for a pull issued to nobody in particular', async () => {
    const { claims } = await tokens.issue({ flowId: 'f', workflowId: 'w' });
    expect(claims.audience).toBe(ANY_AUDIENCE);
  });

  it('names its signing key (kid); after a rotation to [B, A] old tokens still verify and new ones are signed with B', async () => {
    const now = new Date(Math.floor(Date.now() / 1000) * 1000); // tokens carry whole seconds
    const old = await tokens.issue(flow, now);
    expect(JSON.parse(Buffer.from(old.token.split('.')[0]!, 'base64url').toString())).toMatchObject({ alg: 'HS256', kid: 'a' });
    const keyB = Keyring.generate('b');
    const rotated = new EdrTokens(keyA.rotatedTo(keyB.primary), 'dp-1', 60_000);
    expect(await rotated.verify(old.token, 'access', now)).toEqual(old.claims);
    expect(await rotated.verify(old.refreshToken, 'refresh', now)).toMatchObject({ tokenId: old.claims.tokenId });
    const fresh = await rotated.issue(flow, now);
    expect(JSON.parse(Buffer.from(fresh.token.split('.')[0]!, 'base64url').toString())).toMatchObject({ kid: 'b' });
    // the instance that has not rotated yet does not know B
    await expect(tokens.verify(fresh.token, 'access', now)).rejects.toThrow(new EdrTokenInvalid('token signed with an unknown key'));
    // once A is dropped, A's tokens are dead
    const bOnly = new EdrTokens(keyB, 'dp-1', 60_000);
    await expect(bOnly.verify(old.token, 'access', now)).rejects.toThrow(new EdrTokenInvalid('token signed with an unknown key'));
    expect(await bOnly.verify(fresh.token, 'access', now)).toEqual(fresh.claims);
  });

  it('refuses a token without kid, or one whose kid names another key of the ring', async () => {
    const ring = keyA.rotatedTo(Keyring.generate('b').primary);
    const both = new EdrTokens(ring, 'dp-1', 60_000);
    const { token } = await both.issue(flow);
    const [h, p, s] = token.split('.');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
    const relabel = (hdr: Record<string, unknown>) => `${Buffer.from(JSON.stringify(hdr)).toString('base64url')}.${p}.${s}`;
    await expect(both.verify(relabel({ ...header, kid: 'a' }))).rejects.toBeInstanceOf(EdrTokenInvalid);
    const { kid: _kid, ...noKid } = header;
    await expect(both.verify(relabel(noKid))).rejects.toThrow(new EdrTokenInvalid('token signed with an unknown key'));
  });
});

describe('parseRange (single byte ranges, RFC 9110)', () => {
  it.each([
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=90-', 100, { start: 90, end: 99 }],
    ['bytes=95-200', 100, { start: 95, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-500', 100, { start: 0, end: 99 }],
    ['bytes=100-', 100, 'unsatisfiable'],
    ['bytes=-0', 100, 'unsatisfiable'],
    ['bytes=5-2', 100, undefined],
    ['bytes=0-1,5-6', 100, undefined],
    ['items=0-1', 100, undefined],
    [undefined, 100, undefined],
  ] as const)('%s of %i bytes', (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});
