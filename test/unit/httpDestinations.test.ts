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

/** A consumer names the HttpData push destination; an operator's allowlist bounds where the provider's data plane sends. */
let sink: Server;
let base: string;
let received = 0;
const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-allow-'));
writeFileSync(path.join(root, 'a.bin'), 'hello');

beforeAll(async () => {
  sink = createServer((req, res) => {
    req.resume().on('end', () => {
      received++;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
});
afterAll(() => sink?.close());

function transferWith(allowedHttpDestinations: string[], endpoint: string) {
  const config = DataPlaneConfigSchema.parse({ instanceId: 'dp', fileRoot: root, allowedHttpDestinations });
  // the client is never called by `transfer`: a lazy one that connects nowhere
  const acts = createDataPlaneActivities({ config, provisioners: [], client: new Client(), callbackUrl: () => '' });
  const source: DataAddress = { endpointType: 'File', endpoint: 'a.bin', endpointProperties: [] };
  const destination: DataAddress = { endpointType: 'HttpData', endpoint, endpointProperties: [] };
  return new MockActivityEnvironment().run(acts.transfer, { flowId: 'f', source, destination });
}

describe('allowedHttpDestinations', () => {
  it('pushes to a destination under an allowed prefix', async () => {
    const before = received;
    expect(await transferWith([`${base}/inbox`], `${base}/inbox/x`)).toMatchObject({ bytes: 5 });
    expect(received).toBe(before + 1);
  });

  it('refuses, without a request and for good, one outside every prefix (a neighbouring path or port included)', async () => {
    const before = received;
    for (const endpoint of [`${base}/admin`, `${base}/inboxes`, 'http://127.0.0.1:1/inbox', 'not a url']) {
      await expect(transferWith([`${base}/inbox`], endpoint)).rejects.toMatchObject({ type: 'DestinationNotAllowed', nonRetryable: true });
    }
    expect(received).toBe(before);
  });
});
