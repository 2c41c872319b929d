import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataPlaneActivities } from '../../activities/dataPlane.js';
import { DataPlaneConfigSchema } from '../../src/config.js';
import type { DataAddress } from '../../src/DataAddress.js';

/**
 * An attacker (a consumer) names the HttpData push destination and tries to make the provider's
 * data plane reach what it must not: paths beside the allowed one, loopback and metadata addresses
 * in every spelling, names that resolve to loopback, redirects. A real sink on loopback counts
 * what arrives: nothing must.
 */
let sink: Server;
let port: number;
const hits: string[] = [];
const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-ssrf-'));
writeFileSync(path.join(root, 'a.bin'), 'hello');

beforeAll(async () => {
  sink = createServer((req, res) => {
    req.resume().on('end', () => {
      hits.push(req.url ?? '');
      if (req.url?.startsWith('/inbox/redirect')) return void res.writeHead(307, { location: `http://127.0.0.1:${port}/admin` }).end();
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  port = (sink.address() as AddressInfo).port;
});
afterAll(() => sink?.close());

function push(config: Record<string, unknown>, endpoint: string, source: DataAddress = { endpointType: 'File', endpoint: 'a.bin', endpointProperties: [] }) {
  const parsed = DataPlaneConfigSchema.parse({ instanceId: 'dp', fileRoot: root, ...config });
  const acts = createDataPlaneActivities({ config: parsed, provisioners: [], client: new Client(), callbackUrl: () => '' });
  const destination: DataAddress = { endpointType: 'HttpData', endpoint, endpointProperties: [] };
  return new MockActivityEnvironment().run(acts.transfer, { flowId: 'f', source, destination });
}
const refusedForGood = { nonRetryable: true };

describe('with an allowlist, only URLs under it (parsed, whole segments)', () => {
  const allow = () => ({ allowedHttpDestinations: [`http://127.0.0.1:${port}/inbox`] });
  it.each([
    ['dot segments', () => `http://127.0.0.1:${port}/inbox/../admin`],
    ['encoded dot segments', () => `http://127.0.0.1:${port}/inbox/%2e%2e/admin`],
    ['mixed-case encoded dot segments', () => `http://127.0.0.1:${port}/inbox/%2E%2e/admin`],
    ['backslashes', () => `http://127.0.0.1:${port}/inbox\\..\\admin`],
    ['an encoded slash', () => `http://127.0.0.1:${port}/inbox%2f..%2fadmin`],
    ['a neighbouring path', () => `http://127.0.0.1:${port}/inboxes`],
    ['userinfo', () => `http://attacker@127.0.0.1:${port}/inbox/x`],
    ['another spelling of the host', () => `http://localhost:${port}/inbox/x`],
    ['a neighbouring port', () => `http://127.0.0.1:${port + 1}/inbox/x`],
  ])('%s: refused before any request', async (_what, url) => {
    const before = hits.length;
    await expect(push(allow(), url())).rejects.toMatchObject({ type: 'DestinationNotAllowed', ...refusedForGood });
    expect(hits.length).toBe(before);
  });

  it('a redirect under the allowlist is not followed', async () => {
    await expect(push(allow(), `http://127.0.0.1:${port}/inbox/redirect`)).rejects.toMatchObject({ type: 'DestinationNotAllowed', ...refusedForGood });
    expect(hits).not.toContain('/admin');
  });

  it('the allowed path itself is delivered', async () => {
    expect(await push(allow(), `http://127.0.0.1:${port}/inbox/./a/../x`)).toMatchObject({ bytes: 5 });
    expect(hits.at(-1)).toBe('/inbox/x');
  });
});

describe('without an allowlist, private ranges are refused, also after resolution', () => {
  it.each([
    ['loopback', () => `http://127.0.0.1:${port}/x`],
    ['decimal loopback', () => `http://2130706433:${port}/x`],
    ['hex loopback', () => `http://0x7f.0.0.1:${port}/x`],
    ['IPv4-mapped IPv6 loopback', () => `http://[::ffff:127.0.0.1]:${port}/x`],
    ['IPv6 loopback', () => `http://[::1]:${port}/x`],
    ['the unspecified address', () => `http://0.0.0.0:${port}/x`],
    ['cloud metadata', () => 'http://169.254.169.254/latest/meta-data/'],
    ['a name that resolves to loopback', () => `http://localhost:${port}/x`],
  ])('%s', async (_what, url) => {
    const before = hits.length;
    await expect(push({}, url())).rejects.toMatchObject(refusedForGood);
    expect(hits.length).toBe(before);
  });

  it('an HTTP source in a private range is refused too', async () => {
    const source: DataAddress = { endpointType: 'HttpData', endpoint: 'http://169.254.169.254/latest/meta-data/iam', endpointProperties: [] };
    await expect(push({ allowPrivateNetworks: false, allowedNetworks: ['127.0.0.0/8'] }, `http://127.0.0.1:${port}/x`, source)).rejects.toMatchObject({ type: 'SourceNotAllowed', ...refusedForGood });
  });

  it('the operator allows loopback explicitly (the dev setup does), by CIDR or all private ranges', async () => {
    expect(await push({ allowedNetworks: ['127.0.0.0/8', '::1/128'] }, `http://localhost:${port}/ok`)).toMatchObject({ bytes: 5 });
    expect(await push({ allowPrivateNetworks: true }, `http://127.0.0.1:${port}/ok`)).toMatchObject({ bytes: 5 });
    // allowed networks still never follow a redirect
    await expect(push({ allowPrivateNetworks: true }, `http://127.0.0.1:${port}/inbox/redirect`)).rejects.toMatchObject(refusedForGood);
  });

  it('headers no request can carry fail once, without the value in the message', async () => {
    const destination = `http://127.0.0.1:${port}/x`;
    const parsed = DataPlaneConfigSchema.parse({ instanceId: 'dp', fileRoot: root, allowPrivateNetworks: true });
    const acts = createDataPlaneActivities({ config: parsed, provisioners: [], client: new Client(), callbackUrl: () => '' });
    const bad: DataAddress = { endpointType: 'HttpData', endpoint: destination, endpointProperties: [{ name: 'header:X-Token', value: 'secret\u0001value' }] };
    const err = await new MockActivityEnvironment()
      .run(acts.transfer, { flowId: 'f', source: { endpointType: 'File' as const, endpoint: 'a.bin', endpointProperties: [] }, destination: bad })
      .catch((e: Error) => e);
    expect(err).toMatchObject(refusedForGood);
    expect(String((err as Error).message)).not.toContain('secret');
  });
});
