import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryClient } from '../../src/client.js';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../../src/config.js';
import { TRANSFER_PROCESS_WORKFLOW } from '../../src/ids.js';
import { providerPidFor } from '../../src/processStart.js';
import { randomBytes } from 'node:crypto';
import { EncryptionCodec, ferryDataConverter } from '../../src/codec.js';
import { startCodecServer, type CodecServer } from '../../worker/codecServer.js';
import { Keyring } from '../../src/keys.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../../worker/bundle.js';
import { startControlPlaneWorker } from '../../worker/controlPlaneWorker.js';
import { startDataPlaneWorker } from '../../worker/dataPlaneWorker.js';
import { startDevServer } from '../../worker/devServer.js';
import { installRuntime } from '../../worker/runtime.js';
import { freePort } from '../support/cluster.js';
import { makeAsset } from '../support/transfers.js';

/**
 * The Temporal Web UI of a dev server, in a real headless Chromium: filter the workflow list by
 * ferry's search attribute, open a transfer that waits (a provider held in REQUESTED by an
 * agreement with manual start) and check what the page says. Screenshots go to test-output/browser/.
 *
 * To assert more of the page, add one line: `await expectPageShows(page, 'the text')`.
 */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHOTS = path.join(REPO_ROOT, 'test-output', 'browser');
const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const hasBrowser = existsSync(CHROMIUM);
if (!hasBrowser) console.warn(`SKIPPED the Web UI browser test: no Chromium at ${CHROMIUM} (Debian: apt-get install chromium; or set FERRY_CHROMIUM)`);

const TOKENS = { consumerToProvider: 'consumer-presents-this-token', providerToConsumer: 'provider-presents-this-token' };
let env: TestWorkflowEnvironment;
let ui: string;
let root: string;
let profile: string;
let context: BrowserContext;
let ferry: FerryClient;
let codecServer: CodecServer;
const running: { shutdown(): Promise<void> }[] = [];
let shot = 0;

/** Saves a screenshot named after the step, numbered in order. */
async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Waits until the page shows `text` (visible), in the page or in one of its frames (the UI renders
 * workflow summaries and details as markdown in a sandboxed frame); on failure a screenshot says
 * what it showed instead.
 */
export async function expectPageShows(page: Page, text: string | RegExp, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      for (const frame of page.frames()) {
        if (await frame.getByText(text).first().isVisible().catch(() => false)) return;
      }
      if (Date.now() > deadline) throw new Error('not shown');
      await page.waitForTimeout(250);
    }
  } catch {
    const file = await screenshot(page, 'failure');
    throw new Error(`the page (${page.url()}) does not show ${String(text)}; screenshot ${file}`);
  }
}

beforeAll(async () => {
  if (!hasBrowser) return;
  installRuntime();
  const uiPort = await freePort();
  const [cPort, pPort] = [await freePort(), await freePort()];
  const codec = Keyring.generate('browser-test');
  ui = `http://127.0.0.1:${uiPort}`;
  // every payload is encrypted: the UI decodes through a codec server, as with `npm run dev`
  const token = randomBytes(24).toString('base64url');
  codecServer = await startCodecServer({ host: '127.0.0.1', port: 0, codec: new EncryptionCodec(codec), tokens: [{ id: 'ui', token }], corsOrigins: [ui], log: () => undefined });
  env = await startDevServer({ uiPort, dataConverter: ferryDataConverter(codec), uiCodecEndpoint: `${codecServer.url.replace('localhost', '127.0.0.1')}/t/${token}` });
  root = mkdtempSync(path.join(os.tmpdir(), 'ferry-browser-'));
  profile = mkdtempSync(path.join(os.tmpdir(), 'ferry-chromium-'));
  const asset = makeAsset(root, 'provider/assets/a.bin', 100_000);
  const temporal = { address: env.connection.options.address!, namespace: 'default' };
  const consumerUrl = `http://127.0.0.1:${cPort}/dsp`;
  const providerUrl = `http://127.0.0.1:${pPort}/dsp`;
  const [controlPlane, dataPlane] = await Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]);
  const once = { retry: { maxAttempts: 1 } };
  running.push(
    await startControlPlaneWorker(
      ControlPlaneConfigSchema.parse({
        connectorId: 'consumer',
        temporal,
        dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }],
        dsp: { host: '127.0.0.1', port: cPort, publicUrl: consumerUrl, counterparties: [{ id: 'provider', address: providerUrl, inboundToken: TOKENS.providerToConsumer, outboundToken: TOKENS.consumerToProvider }] },
      }),
      { workflowBundle: controlPlane, keys: { codec }, connect: once },
    ),
    await startControlPlaneWorker(
      ControlPlaneConfigSchema.parse({
        connectorId: 'provider',
        temporal,
        dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }],
        assets: { a: { endpointType: 'File', endpoint: asset.file } },
        dsp: {
          host: '127.0.0.1',
          port: pPort,
          publicUrl: providerUrl,
          counterparties: [{ id: 'consumer', address: consumerUrl, inboundToken: TOKENS.consumerToProvider, outboundToken: TOKENS.providerToConsumer }],
          // an operator approves each transfer under this agreement: the provider waits in REQUESTED
          agreements: { 'agreement-approval': { assetId: 'a', counterparty: 'consumer', start: 'manual' } },
        },
      }),
      { workflowBundle: controlPlane, keys: { codec }, connect: once },
    ),
    await startDataPlaneWorker(DataPlaneConfigSchema.parse({ instanceId: 'consumer-dp', temporal, fileRoot: root }), { workflowBundle: dataPlane, keys: { codec }, connect: once }),
    await startDataPlaneWorker(DataPlaneConfigSchema.parse({ instanceId: 'provider-dp', temporal, fileRoot: root, provisioners: [] }), { workflowBundle: dataPlane, keys: { codec }, connect: once }),
  );
  ferry = new FerryClient(env.client);
  const request = (processId: string) => ({
    connectorId: 'consumer',
    processId,
    counterpartyAddress: providerUrl,
    agreementId: 'agreement-approval',
    assetId: 'a',
    transferType: 'File-PUSH' as const,
    dataDestination: { endpointType: 'File' as const, endpoint: `consumer/inbox/${processId}` },
  });
  // one waits for approval; the other is terminated, so the filter has something to leave out
  await ferry.startTransfer(request('waiting-1'));
  await ferry.startTransfer(request('ended-1'));
  await ferry.waitForState('consumer', 'waiting-1', ['REQUESTED']);
  await ferry.waitForState('consumer', 'ended-1', ['REQUESTED']);
  await ferry.terminate('consumer', 'ended-1', 'not needed');
  await ferry.waitForState('consumer', 'ended-1', ['TERMINATED']);
  // its provider hears it after the consumer ended: awaited too, so that neither stays REQUESTED
  await ferry.waitForState('provider', providerPidFor('consumer', 'ended-1'), ['TERMINATED']);

  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1600, height: 1000 },
  });
}, 240_000);

afterAll(async () => {
  await context?.close();
  for (const w of running.reverse()) await w.shutdown().catch(() => undefined);
  await env?.teardown();
  await codecServer?.close();
  for (const dir of [root, profile]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasBrowser)('the Web UI, in Chromium', () => {
  it('filters the workflow list by FerryTransferState = "REQUESTED" and opens the waiting transfer', async () => {
    const page = await context.newPage();
    const waitingProvider = `transfer-provider-${providerPidFor('consumer', 'waiting-1')}`;
    const query = 'FerryTransferState = "REQUESTED"';
    // visibility trails the workflows by a moment: reload until the filtered list has both waiting processes
    // and no longer the ended transfer's two (their TERMINATED may reach visibility after the waiting ones)
    await expect
      .poll(
        async () => {
          await page.goto(`${ui}/namespaces/default/workflows?query=${encodeURIComponent(query)}`);
          const listed = await page.getByRole('link', { name: waitingProvider }).waitFor({ state: 'visible', timeout: 5000 }).then(() => true, () => false);
          return listed && (await expectPageShows(page, '2 Workflows', 5000).then(() => true, () => false)) && (await page.getByText('transfer-consumer-ended-1').count()) === 0;
        },
        { timeout: 60_000, interval: 1000 },
      )
      .toBe(true);
    await expectPageShows(page, 'transfer-consumer-waiting-1');
    await expectPageShows(page, waitingProvider);
    await expectPageShows(page, '2 Workflows');
    await expectPageShows(page, 'FerryTransferState = "REQUESTED"');
    // the terminated one is left out by the filter
    expect(await page.getByText('transfer-consumer-ended-1').count()).toBe(0);
    await screenshot(page, 'list-filtered-requested');

    await page.getByRole('link', { name: waitingProvider }).click();
    await page.waitForURL(new RegExp(`/workflows/${waitingProvider}/`));
    await expectPageShows(page, waitingProvider);
    await expectPageShows(page, TRANSFER_PROCESS_WORKFLOW);
    await expectPageShows(page, /Running/i);
    // the input, decoded by the codec server
    await expectPageShows(page, '"agreementId": "agreement-approval"');
    // the timeline names its timer by what it waits for
    await expectPageShows(page, 'counterparty timeout (1h)');
    await screenshot(page, 'waiting-provider-transfer');
    // its summary (set at start) and its current details (what it waits for, and until when)
    await page.getByRole('tab', { name: 'User Metadata' }).click();
    // (the UI renders the counterparty's URL in the summary as a link of its own)
    await expectPageShows(page, 'provider provider →');
    await expectPageShows(page, /File-PUSH of a$/);
    await expectPageShows(page, 'agreement-approval');
    await expectPageShows(page, /REQUESTED — waiting for a start command; ends TERMINATED at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    await screenshot(page, 'waiting-provider-summary-and-details');
    await page.close();
  });
});
