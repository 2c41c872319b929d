import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { z } from 'zod';
import { FerryClient } from '../../src/client.js';
import { ControlPlaneConfigSchema } from '../../src/config.js';
import type { Keyring } from '../../src/keys.js';
import { bundle, CONTROL_PLANE_WORKFLOWS } from '../../worker/bundle.js';
import { startControlPlaneWorker } from '../../worker/controlPlaneWorker.js';

/**
 * ferry's control plane for the DPS TCK's control-plane tests (CP_C, CP_P): connector `ferry` with
 * the TCK registered (by configuration) as its DPS data plane `tck-dp`, and the TCK as its DSP
 * counterparty in both roles (`providerId` for CP_C, `consumerId` for CP_P, the TCK's defaults),
 * with the agreement every test names seeded.
 *
 * Two test-only parts:
 * - the trigger webhook the CP_C tests call (`POST {webhook}/dataflows/trigger`), which starts a
 *   consumer pull and answers `{"id": processId}`;
 * - a DSP front (what a reverse proxy in front of ferry's DSP endpoint would be) that carries the
 *   TCK 1.2.0's DSP messages to ferry: they authenticate with `{"clientId": …}` instead of a
 *   bearer token, and name a fresh random pid for the other side in every message (the process is
 *   the one of the URL path), so the front sets the bearer token of that participant and the pids
 *   of the process the path names. The DPS TCK tests signaling, not DSP; the DSP TCK does that.
 *
 * The TCK's callbacks carry no credentials, so `tck-dp` accepts unauthenticated callbacks.
 */
export const TCK_AGREEMENT = 'tck-dps-agreement';
export const TCK_ASSET = 'tck-dps-asset';

export interface ControlPlaneSide {
  properties(): string[];
  shutdown(): Promise<void>;
}

export async function startControlPlaneSide(opts: { env: TestWorkflowEnvironment; codec: Keyring; root: string; tckCallbackAddress: string }): Promise<ControlPlaneSide> {
  const fileRoot = path.join(opts.root, 'cp-files');
  mkdirSync(fileRoot, { recursive: true });
  writeFileSync(path.join(fileRoot, 'asset.txt'), 'ferry DPS TCK asset\n');
  const tokens = { providerId: `tck-p-${randomBytes(16).toString('hex')}`, consumerId: `tck-c-${randomBytes(16).toString('hex')}` };
  const front = await startDspFront(tokens);
  const temporal = { address: opts.env.connection.options.address!, namespace: 'default' };
  const ferry = new FerryClient(opts.env.client);
  const cp = await startControlPlaneWorker(
    ControlPlaneConfigSchema.parse({
      connectorId: 'ferry',
      temporal,
      dataPlanes: [{ id: 'tck-dp', transferTypes: ['HttpData-PULL'], dps: { url: opts.tckCallbackAddress, acceptUnauthenticated: true } }],
      assets: { [TCK_ASSET]: { endpointType: 'File', endpoint: path.join(fileRoot, 'asset.txt') } },
      dsp: {
        host: '127.0.0.1',
        port: 0,
        // counterparties reach our DSP endpoint through the front
        publicUrl: front.url,
        counterparties: (['providerId', 'consumerId'] as const).map((id) => ({
          id,
          address: opts.tckCallbackAddress,
          inboundToken: tokens[id],
          outboundToken: `tck-out-${randomBytes(16).toString('hex')}`,
        })),
        agreements: { [TCK_AGREEMENT]: { assetId: TCK_ASSET, counterparty: 'consumerId' } },
      },
      dpsSignaling: { host: '127.0.0.1', port: 0 },
    }),
    {
      workflowBundle: await bundle(CONTROL_PLANE_WORKFLOWS),
      keys: { codec: opts.codec },
      dpsRoutes: (app) =>
        app.post('/dataflows/trigger', async (req) => {
          const body = z.object({ agreementId: z.string().min(1), datasetId: z.string().min(1), dspUrl: z.url() }).parse(req.body);
          const { processId } = await ferry.startTransfer({
            connectorId: 'ferry',
            counterpartyAddress: body.dspUrl,
            agreementId: body.agreementId,
            assetId: body.datasetId,
            transferType: 'HttpData-PULL',
            dataPlaneId: 'tck-dp',
          });
          return { id: processId };
        }),
    },
  );
  front.target(cp.dspUrl!);
  return {
    properties: () => {
      const tests = ['01_01', '01_02', '02_01', '02_02', '03_01'];
      return [
        'dataspacetck.test.package=org.eclipse.dataspacetck.dps.verification.controlplane',
        `dataspacetck.dps.controlplane.webhook.url=${cp.dpsUrl}`,
        `dataspacetck.dps.controlplane.signaling.url=${cp.dpsUrl}`,
        `dataspacetck.dps.controlplane.protocol.url=${front.url}`,
        ...tests.flatMap((t) => [`CP_C_${t}_AGREEMENTID=${TCK_AGREEMENT}`, `CP_C_${t}_DATASETID=${TCK_ASSET}`, `CP_P_${t}_AGREEMENTID=${TCK_AGREEMENT}`]),
      ];
    },
    async shutdown() {
      await cp.shutdown();
      front.close();
    },
  };
}

const pick = (o: Record<string, unknown>, ...keys: string[]) => Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));

/** The DSP front: the TCK's `{"clientId": …}` becomes that participant's bearer token; message pids become those of the path's process. */
async function startDspFront(tokens: Record<string, string>): Promise<{ url: string; target(dspUrl: string): void; close(): void }> {
  let target = '';
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void forward(req, Buffer.concat(chunks).toString('utf8'), res).catch(() => res.writeHead(502).end()));
  });
  const bearerOf = (req: IncomingMessage): string | undefined => {
    try {
      const clientId = (JSON.parse(req.headers.authorization ?? '') as { clientId?: string }).clientId;
      return clientId && Object.hasOwn(tokens, clientId) ? `Bearer ${tokens[clientId]}` : undefined;
    } catch {
      return undefined;
    }
  };
  async function forward(req: IncomingMessage, body: string, res: ServerResponse): Promise<void> {
    const authorization = bearerOf(req);
    const headers = { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) };
    const url = new URL(req.url ?? '/', 'http://x');
    const message = /^\/transfers\/([^/]+)\/(start|completion|termination|suspension)$/.exec(url.pathname);
    let payload = body;
    if (req.method === 'POST') {
      const parsed = JSON.parse(body || '{}') as Record<string, unknown>;
      // DSP 2025-1 has `@context` as an array; the TCK sends a string
      if (typeof parsed['@context'] === 'string') parsed['@context'] = [parsed['@context']];
      if (message) {
        // the process the path names, as ferry knows it (its own pids)
        const current = await fetch(`${target}/transfers/${message[1]}`, { headers });
        if (current.ok) Object.assign(parsed, pick((await current.json()) as Record<string, unknown>, 'providerPid', 'consumerPid'));
      }
      payload = JSON.stringify(parsed);
    }
    const answer = await fetch(`${target}${url.pathname}`, { method: req.method!, headers, ...(req.method === 'POST' ? { body: payload } : {}) });
    if (!answer.ok) console.log(`[tck:dps] DSP front: ${req.method} ${url.pathname} -> ${answer.status} ${await answer.clone().text()} (sent ${payload.slice(0, 600)})`);
    res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await answer.arrayBuffer()));
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    target: (dspUrl) => (target = dspUrl.replace(/\/+$/, '')),
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
