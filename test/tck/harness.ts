import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { FerryClient } from '../../src/client.js';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../../src/config.js';
import { ferryDataConverter } from '../../src/codec.js';
import { Keyring } from '../../src/keys.js';
import type { TransferType } from '../../src/TransferProcess.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../../worker/bundle.js';
import { startControlPlaneWorker } from '../../worker/controlPlaneWorker.js';
import { startDataPlaneWorker } from '../../worker/dataPlaneWorker.js';
import { startDevServer } from '../../worker/devServer.js';
import { installRuntime } from '../../worker/runtime.js';
import { freePort } from '../support/cluster.js';
import { PROVIDER_AGREEMENTS, startReactionEngine } from './reactions.js';

/**
 * ferry as the TCK's connector under test, all in this process: an in-memory Temporal dev server,
 * one control plane (connector `ferry`, DSP over HTTP) and one data plane, the test-only trigger
 * endpoint the TP_C tests call, and the scripted reactions (reactions.ts).
 */

export const CONNECTOR_ID = 'ferry';
/** ferry's counterparty id for the TCK (the TCK never puts ids on the wire; the bearer token identifies it). */
export const TCK_COUNTERPARTY = 'tck';
export const TCK_ASSET = 'tck-asset';
/** The transfer type of every test: the TCK's default `HTTP-PULL` is not a ferry format. */
export const TCK_FORMAT = 'HttpData-PULL';

export interface TckHarness {
  /** ferry's DSP base URL (the TCK's `dataspacetck.dsp.connector.http.url`). */
  dspUrl: string;
  /** The TP_C trigger (`dataspacetck.dsp.connector.transfer.initiate.url`). */
  triggerUrl: string;
  /** The exact `Authorization` header value the TCK must send (a fresh random token per run). */
  authorization: string;
  /** What the scripts could not do, for the report. */
  problems(): string[];
  shutdown(): Promise<void>;
}

const log = (line: string) => console.log(`[ferry-tck] ${line}`);

export async function startTckHarness(opts: { tckCallbackAddress: string }): Promise<TckHarness> {
  installRuntime();
  const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-tck-'));
  const fileRoot = path.join(root, 'files');
  mkdirSync(path.join(fileRoot, 'tck'), { recursive: true });
  writeFileSync(path.join(fileRoot, 'tck', 'asset.txt'), 'ferry TCK asset\n');

  const codec = Keyring.generate('tck');
  const [env, controlPlaneBundle, dataPlaneBundle] = await Promise.all([
    startDevServer({ dataConverter: ferryDataConverter(codec) }),
    bundle(CONTROL_PLANE_WORKFLOWS),
    bundle(DATA_PLANE_WORKFLOWS),
  ]);
  const temporal = { address: env.connection.options.address!, namespace: 'default' };
  const inboundToken = `tck-in-${randomBytes(16).toString('hex')}`;
  const dspPort = await freePort();
  const dspUrl = `http://localhost:${dspPort}/dsp`;

  // stopped in reverse order of start: trigger, scripts, workers, Temporal, files
  const stops: (() => Promise<void>)[] = [async () => rmSync(root, { recursive: true, force: true }), () => env.teardown()];
  const shutdown = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch((e: Error) => log(`shutdown: ${e.message}`));
  };
  try {
    // Raw objects through the schemas: the schema (not this file) decides what a valid config is.
    const dataPlane = await startDataPlaneWorker(
      DataPlaneConfigSchema.parse({
        instanceId: 'tck-dp',
        temporal,
        fileRoot,
        // the provider's data plane serves pulls here and issues EDRs for it
        publicApi: { host: '127.0.0.1', port: 0 },
      }),
      { workflowBundle: dataPlaneBundle, keys: { codec, edr: Keyring.generate('tck-edr') } },
    );
    stops.push(dataPlane.shutdown);
    const controlPlane = await startControlPlaneWorker(
      ControlPlaneConfigSchema.parse({
        connectorId: CONNECTOR_ID,
        temporal,
        dataPlanes: [{ id: 'tck-dp', transferTypes: [TCK_FORMAT] }],
        assets: { [TCK_ASSET]: { endpointType: 'File', endpoint: 'tck/asset.txt' } },
        dsp: {
          host: '127.0.0.1',
          port: dspPort,
          publicUrl: dspUrl,
          counterparties: [
            { id: TCK_COUNTERPARTY, address: opts.tckCallbackAddress, inboundToken, outboundToken: `tck-out-${randomBytes(16).toString('hex')}` },
          ],
          // `start: 'manual'`: the provider waits in REQUESTED, so the script (not a race) decides when it starts
          agreements: Object.fromEntries(PROVIDER_AGREEMENTS.map((id) => [id, { assetId: TCK_ASSET, counterparty: TCK_COUNTERPARTY, start: 'manual' }])),
        },
      }),
      { workflowBundle: controlPlaneBundle, keys: { codec } },
    );
    stops.push(controlPlane.shutdown);

    const ferry = new FerryClient(env.client);
    const engine = startReactionEngine({ client: env.client, ferry, connectorId: CONNECTOR_ID, log });
    stops.push(() => engine.stop());

    const authorization = `Bearer ${inboundToken}`;
    const trigger = await startTrigger({ authorization, ferry, watch: engine.watch });
    stops.push(() => new Promise<void>((r) => trigger.server.close(() => r())));
    log(`ferry up: DSP ${dspUrl}, trigger ${trigger.url}, Temporal ${temporal.address}`);
    return { dspUrl, triggerUrl: trigger.url, authorization, problems: () => [...engine.problems], shutdown };
  } catch (e) {
    await shutdown();
    throw e;
  }
}

/** The body the TCK POSTs to the trigger (plain JSON; docs/tck-notes.md §4). */
interface TriggerBody {
  providerId?: string;
  agreementId: string;
  format: string;
  connectorAddress: string;
}

/**
 * The TP_C trigger: answers 200 at once, then starts a consumer transfer towards `connectorAddress`.
 * Test-only; a real connector would start transfers from its management API.
 */
async function startTrigger(opts: { authorization: string; ferry: FerryClient; watch: (processId: string, agreementId: string) => void }): Promise<{ url: string; server: Server }> {
  const expected = Buffer.from(opts.authorization);
  const authorized = (req: IncomingMessage) => {
    const given = Buffer.from(req.headers.authorization ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/tck/transfers/requests') return void res.writeHead(405).end();
      if (!authorized(req)) return void res.writeHead(401).end();
      let body: TriggerBody;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as TriggerBody;
        if (typeof body.agreementId !== 'string' || typeof body.connectorAddress !== 'string' || typeof body.format !== 'string') throw new Error('missing fields');
      } catch (e) {
        return void res.writeHead(400, { 'content-type': 'text/plain' }).end(`bad trigger body: ${(e as Error).message}`);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      // after the answer: the TCK starts waiting for our request only once the trigger call returned
      setTimeout(() => {
        opts.ferry
          .startTransfer({
            connectorId: CONNECTOR_ID,
            counterpartyAddress: body.connectorAddress,
            agreementId: body.agreementId,
            assetId: TCK_ASSET,
            transferType: body.format as TransferType, // startTransfer validates it
            // a pull has no dataDestination: the provider's start message brings the EDR
          })
          .then(
            (started) => {
              log(`trigger ${body.agreementId}: consumer transfer ${started.processId} towards ${body.connectorAddress}`);
              opts.watch(started.processId, body.agreementId);
            },
            (e: Error) => log(`trigger ${body.agreementId}: startTransfer failed: ${e.message}`),
          );
      }, 200);
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });
  return { url: `http://localhost:${port}/tck/transfers/requests`, server };
}
