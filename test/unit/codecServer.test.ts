import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec.js';
import { ConfigError } from '../../src/config.js';
import { Keyring } from '../../src/keys.js';
import { parseCodecServerTokens, startCodecServer, type CodecServer } from '../../worker/codecServer.js';

/** The codec server over real HTTP on loopback, as the Web UI and the Temporal CLI call it. */
const keys = Keyring.generate('ui-key');
const codec = new EncryptionCodec(keys);
const TOKEN = 'operator-token-5c1f0e9a2b7d4e66';
const UI = 'http://localhost:8233';
const log: string[] = [];
let server: CodecServer;
let restricted: CodecServer;

const asJson = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
  data: Buffer.from(p.data!).toString('base64'),
});
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
const auth = { authorization: `Bearer ${TOKEN}`, 'x-namespace': 'default' };

beforeAll(async () => {
  const common = { host: '127.0.0.1', port: 0, codec, tokens: [{ id: 'alice', token: TOKEN }], corsOrigins: [UI], log: (l: string) => log.push(l) };
  server = await startCodecServer(common);
  restricted = await startCodecServer({ ...common, namespaces: ['org-a'] });
});
afterAll(async () => {
  await server?.close();
  await restricted?.close();
});

describe('codec server', () => {
  it('decodes what the codec encrypted and encodes for it: a round trip over HTTP', async () => {
    const value = { endpointProperties: [{ name: 'header:Cookie', value: 'session=s3cret' }] };
    const [encrypted] = await codec.encode([defaultPayloadConverter.toPayload(value)!]);
    const decoded = await post(`${server.url}/decode`, { payloads: [asJson(encrypted!)] }, auth);
    expect(decoded.status).toBe(200);
    expect(decoded.headers.get('cache-control')).toBe('no-store');
    const { payloads } = (await decoded.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
    expect(JSON.parse(Buffer.from(payloads[0]!.data, 'base64').toString())).toEqual(value);

    const encoded = await post(`${server.url}/encode`, { payloads }, auth);
    expect(encoded.status).toBe(200);
    const again = ((await encoded.json()) as { payloads: { metadata: Record<string, string>; data: string }[] }).payloads[0]!;
    expect(Buffer.from(again.metadata['encryption-key-id']!, 'base64').toString()).toBe('ui-key');
    const back = await codec.decode([{ metadata: { encoding: Buffer.from(again.metadata.encoding!, 'base64'), 'encryption-key-id': Buffer.from('ui-key') }, data: Buffer.from(again.data, 'base64') }]);
    expect(defaultPayloadConverter.fromPayload(back[0]!)).toEqual(value);
    expect(log.at(-1)).toBe('codec server: encode 1 payload(s) for alice in namespace default');
    expect(log.join('\n')).not.toContain('s3cret');
  });

  it('answers 401 without a token, with a wrong one, and before it reads the body', async () => {
    const [p] = await codec.encode([defaultPayloadConverter.toPayload('x')!]);
    for (const headers of [{}, { authorization: 'Bearer wrong-token-wrong-token-wrong' }, { authorization: TOKEN }] as Record<string, string>[]) {
      const res = await post(`${server.url}/decode`, { payloads: [asJson(p!)] }, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    // a body far over the limit, and not JSON: still 401, not 413 or 400
    expect((await post(`${server.url}/decode`, 'x'.repeat(9 * 1024 * 1024))).status).toBe(401);
  });

  it('answers a CORS preflight from the Web UI origin, and refuses other origins', async () => {
    const preflight = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: { origin: UI, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(UI);
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('x-namespace');
    expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');

    const evil = await fetch(`${server.url}/decode`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
    expect(evil.status).toBe(403);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();

    const fromUi = await post(`${server.url}/decode`, { payloads: [] }, { ...auth, origin: UI });
    expect(fromUi.status).toBe(200);
    expect(fromUi.headers.get('access-control-allow-origin')).toBe(UI);
    const fromElsewhere = await post(`${server.url}/decode`, { payloads: [] }, { ...auth, origin: 'http://evil.example' });
    expect(fromElsewhere.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('takes the token in the path for a Web UI that sends none (/t/<token>/decode)', async () => {
    const [p] = await codec.encode([defaultPayloadConverter.toPayload('via path')!]);
    const ok = await post(`${server.url}/t/${TOKEN}/decode`, { payloads: [asJson(p!)] }, { 'x-namespace': 'default', origin: UI });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(UI);
    expect((await post(`${server.url}/t/not-the-token-not-the-token/decode`, { payloads: [] })).status).toBe(401);
  });

  it('serves only its namespaces (X-Namespace or the CLI form /{namespace}/decode), and says which key it lacks', async () => {
    expect((await post(`${restricted.url}/decode`, { payloads: [] }, { ...auth, 'x-namespace': 'org-a' })).status).toBe(200);
    expect((await post(`${restricted.url}/org-a/decode`, { payloads: [] }, { authorization: auth.authorization })).status).toBe(200);
    expect((await post(`${restricted.url}/decode`, { payloads: [] }, { ...auth, 'x-namespace': 'org-b' })).status).toBe(403);
    expect((await post(`${restricted.url}/decode`, { payloads: [] }, { authorization: auth.authorization })).status).toBe(403);
    expect((await post(`${restricted.url}/org-a/decode`, { payloads: [] }, { ...auth, 'x-namespace': 'org-b' })).status).toBe(400);

    const [foreign] = await new EncryptionCodec(Keyring.generate('other-key')).encode([defaultPayloadConverter.toPayload('x')!]);
    const res = await post(`${server.url}/decode`, { payloads: [asJson(foreign!)] }, auth);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/key "other-key", which is not in this keyring/);
    expect((await post(`${server.url}/decode`, { payloads: [{ data: 'not base64!' }] }, auth)).status).toBe(400);
    expect((await post(`${server.url}/nope`, {}, auth)).status).toBe(404);
  });

  it('reads its tokens as name:token entries and refuses short ones', () => {
    expect(parseCodecServerTokens(`# operators\nalice:${TOKEN}\nbob:${TOKEN}x`, 'T')).toEqual([
      { id: 'alice', token: TOKEN },
      { id: 'bob', token: `${TOKEN}x` },
    ]);
    expect(() => parseCodecServerTokens('alice:short', 'T')).toThrow(ConfigError);
    expect(() => parseCodecServerTokens(TOKEN, 'T')).toThrow(/entry 1 is not `name:token`/);
    expect(() => parseCodecServerTokens(TOKEN, 'T')).toThrow(expect.objectContaining({ message: expect.not.stringContaining(TOKEN) }));
  });
});
