import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EdrTokens } from '../../activities/pull/EdrTokens.js';
import { PullSessions } from '../../activities/pull/PullSessions.js';
import type { PullAccess } from '../../src/DataFlow.js';
import { Keyring } from '../../src/keys.js';
import { startPublicApiServer, type PublicApiServer } from '../../worker/publicApiServer.js';

/**
 * The public pull endpoint on a real loopback server, its DataFlow answer given directly: what each
 * answer of the flow means for a request, and the bandwidth cap. (With a real DataFlow: httpPull.test.ts.)
 */
const MiB = 1024 * 1024;
const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-public-'));
const data = randomBytes(MiB);
writeFileSync(path.join(root, 'a.bin'), data);
const tokens = new EdrTokens(Keyring.generate('k'), 'dp', 60_000);
let access: () => Promise<PullAccess | undefined>;
let api: PublicApiServer;
let limited: PublicApiServer;
let token: string;
let tokenId: string;

const live = (): PullAccess => ({ state: 'STARTED', liveTokenIds: [tokenId], source: { endpointType: 'File', endpoint: 'a.bin', endpointProperties: [] } });

beforeAll(async () => {
  const issued = await tokens.issue({ flowId: 'f', workflowId: 'dataflow-p-f' });
  [token, tokenId] = [issued.token, issued.claims.tokenId];
  const common = { host: '127.0.0.1', port: 0, access: (_: string) => access(), tokens, fileRoot: root };
  api = await startPublicApiServer({ ...common, sessions: new PullSessions() });
  limited = await startPublicApiServer({ ...common, sessions: new PullSessions(), rateLimitBytesPerSec: 2 * MiB });
});
afterAll(async () => {
  await api?.close();
  await limited?.close();
});

const get = (url: string, init: RequestInit = {}) => fetch(url, { ...init, headers: { authorization: token, ...(init.headers ?? {}) } });

describe('the public pull endpoint', () => {
  it('answers by what the flow says: live 200, released or not started 403, gone 403, unreachable 503', async () => {
    access = async () => live();
    expect((await get(api.url)).status).toBe(200);
    expect((await get(api.url, { method: 'HEAD' })).headers.get('content-length')).toBe(String(MiB));
    access = async () => ({ ...live(), liveTokenIds: [] });
    expect((await get(api.url)).status).toBe(403);
    access = async () => ({ ...live(), state: 'SUSPENDED' });
    expect((await get(api.url)).status).toBe(403);
    access = async () => undefined;
    expect((await get(api.url)).status).toBe(403);
    access = async () => {
      throw new Error('Temporal unreachable');
    };
    expect((await get(api.url)).status).toBe(503);
  });

  it('serves only its path, only GET and HEAD', async () => {
    access = async () => live();
    expect((await get(`${api.url}/other`)).status).toBe(404);
    expect((await get(api.url, { method: 'DELETE' })).status).toBe(405);
    expect((await get(`${api.url}/refresh`)).status).toBe(405);
  });

  it('caps the bandwidth of a response', async () => {
    access = async () => live();
    const started = performance.now();
    const res = await get(limited.url);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.equals(data)).toBe(true);
    // the bucket holds 0.1 s of traffic, so 1 MiB at 2 MiB/s needs at least 0.4 s
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
  });
});
