import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FerryClient } from '../src/client.js';
import { EncryptionCodec, ferryDataConverter } from '../src/codec.js';
import { startCodecServer } from './codecServer.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from './bundle.js';
import { startControlPlaneWorker } from './controlPlaneWorker.js';
import { startDataPlaneWorker } from './dataPlaneWorker.js';
import { demoConfigs, DEMO_AGREEMENT, DEMO_ASSET, devCodecServerToken, devKeys, ensureDemoAsset } from './demo.js';
import { startDevServer } from './devServer.js';
import { installRuntime, runMain, untilSignal } from './runtime.js';
import { REPO_ROOT, resolveTemporalCli } from './temporalCli.js';

/**
 * `npm run dev`: the whole engine on one machine. An embedded Temporal dev server (SQLite under
 * .data/, Web UI on :8233), control-plane and data-plane workers for a consumer and a provider
 * connector, and one real demo transfer. Stays up until Ctrl-C.
 */
runMain(async () => {
  const { values } = parseArgs({
    options: {
      once: { type: 'boolean', default: false },
      port: { type: 'string', default: process.env.FERRY_DEV_PORT ?? '7233' },
      'ui-port': { type: 'string', default: process.env.FERRY_DEV_UI_PORT ?? '8233' },
      'codec-port': { type: 'string', default: process.env.FERRY_DEV_CODEC_PORT ?? '0' },
      data: { type: 'string', default: process.env.FERRY_DATA_DIR ?? path.join(REPO_ROOT, '.data') },
    },
  });
  installRuntime();
  const dataDir = path.resolve(values.data!);
  const cli = resolveTemporalCli();
  console.log(`Temporal CLI: ${cli.type === 'existing-path' ? `${cli.path} (${cli.source})` : 'SDK download'}`);
  const keys = devKeys(dataDir);
  // The Web UI decodes payloads through the codec server; this UI sends no Authorization header,
  // so its codec endpoint carries the token in its path (the UI listens on loopback only).
  const ui = `http://localhost:${values['ui-port']}`;
  const codecToken = devCodecServerToken(dataDir);
  const codecServer = await startCodecServer({
    host: '127.0.0.1',
    port: Number(values['codec-port']),
    codec: new EncryptionCodec(keys.controlPlane.codec),
    tokens: [codecToken],
    corsOrigins: [ui, `http://127.0.0.1:${values['ui-port']}`],
    log: () => undefined,
  });
  const codecUrl = codecServer.url.replace('localhost', '127.0.0.1');
  const uiCodecEndpoint = `${codecUrl}/t/${codecToken.token}`;
  const env = await startDevServer({
    dbFile: path.join(dataDir, 'temporal.db'),
    port: Number(values.port),
    uiPort: Number(values['ui-port']),
    dataConverter: ferryDataConverter(keys.controlPlane.codec),
    uiCodecEndpoint,
  });
  const temporal = { address: env.connection.options.address ?? `localhost:${values.port}`, namespace: 'default' };
  const fileRoot = path.join(dataDir, 'files');
  const asset = ensureDemoAsset(fileRoot);
  const cfg = demoConfigs({ temporal, fileRoot });

  // one bundle per plane, shared by that plane's workers
  const [controlPlane, dataPlane] = await Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]);
  const workers = [
    await startControlPlaneWorker(cfg.consumer, { workflowBundle: controlPlane, keys: keys.controlPlane }),
    await startControlPlaneWorker(cfg.provider, { workflowBundle: controlPlane, keys: keys.controlPlane }),
    await startDataPlaneWorker(cfg.consumerDp, { workflowBundle: dataPlane, keys: keys.consumerDp }),
    await startDataPlaneWorker(cfg.providerDp, { workflowBundle: dataPlane, keys: keys.providerDp }),
  ];
  const uiAnswer = await fetch(ui).then((r) => `HTTP ${r.status}`, (e: Error) => `not reachable: ${e.message}`);
  console.log(`Temporal dev server at ${temporal.address}, Web UI at ${ui} (${uiAnswer})`);
  // the SQLite file keeps every earlier transfer across restarts
  const earlier = await env.client.workflow.count(`WorkflowType = 'transferProcess'`);
  console.log(`${earlier.count} transfer processes recorded in ${path.join(dataDir, 'temporal.db')}`);

  const ferry = new FerryClient(env.client);
  const started = await ferry.startTransfer({
    connectorId: 'consumer',
    counterpartyAddress: cfg.providerAddress,
    agreementId: DEMO_AGREEMENT,
    assetId: DEMO_ASSET,
    transferType: 'File-PUSH',
    dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
  });
  const link = (id: string) => `${ui}/namespaces/default/workflows/${encodeURIComponent(id)}`;
  console.log(`Demo transfer ${started.processId}`);
  console.log(`  consumer TransferProcess  ${link(started.workflowId)}`);
  console.log(`  consumer DataFlow         ${link(`dataflow-consumer-${started.processId}`)}`);
  const result = await ferry.result('consumer', started.processId);
  const status = await ferry.status('consumer', started.processId);
  console.log(`  provider TransferProcess  ${link(`transfer-provider-${status.counterpartyPid}`)}`);
  console.log(`  provider DataFlow         ${link(`dataflow-provider-${status.counterpartyPid}`)}`);
  console.log(`Demo transfer ${result.state}: ${result.reason}`);
  if (result.state === 'COMPLETED') {
    const delivered = path.join(status.dataDestination!.endpoint, 'demo.bin');
    const sha256 = createHash('sha256').update(readFileSync(delivered)).digest('hex');
    console.log(`  delivered ${delivered}: sha256 ${sha256} ${sha256 === asset.sha256 ? 'equals the source' : `DIFFERS from the source ${asset.sha256}`}`);
    if (sha256 !== asset.sha256) process.exitCode = 1;
  }

  console.log(`Codec server at ${codecUrl}: ${await checkCodecServer(ui, uiCodecEndpoint, started.workflowId, env)}`);
  console.log(`  the CLI: temporal workflow show -w <id> --codec-endpoint ${codecUrl} --codec-auth "Bearer $(cut -d: -f2 ${path.join(dataDir, 'keys', 'codec-server.tokens')})"`);

  if (!values.once) {
    console.log(`Up. Start more transfers with \`npm run ferry -- start …\`; Ctrl-C stops everything.`);
    await untilSignal();
  }
  console.log('Shutting down…');
  for (const w of workers.reverse()) await w.shutdown();
  await env.teardown();
  await codecServer.close();
  if (result.state !== 'COMPLETED') process.exitCode = 1;
});

/** Does the Web UI know the codec server, and does the codec server decode what the UI would send it (the demo's stored input)? */
async function checkCodecServer(ui: string, endpoint: string, workflowId: string, env: Awaited<ReturnType<typeof startDevServer>>): Promise<string> {
  try {
    const settings = (await (await fetch(`${ui}/api/v1/settings`)).json()) as { Codec?: { Endpoint?: string } };
    if (settings.Codec?.Endpoint !== endpoint) return `NOT configured in the Web UI (it has ${JSON.stringify(settings.Codec?.Endpoint ?? null)})`;
    // as the server stores it (the UI gets the same): encrypted
    const { history } = await env.client.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId } });
    const input = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    if (Buffer.from(input?.metadata?.encoding ?? new Uint8Array()).toString() !== 'binary/encrypted') return 'FAILED: the stored input is not encrypted';
    const b64 = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('base64');
    const res = await fetch(`${endpoint}/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', origin: ui },
      body: JSON.stringify({ payloads: [{ metadata: Object.fromEntries(Object.entries(input?.metadata ?? {}).map(([k, v]) => [k, b64(v)])), data: b64(input?.data) }] }),
    });
    const decoded = ((await res.json()) as { payloads?: { data: string }[] }).payloads?.[0]?.data;
    const text = decoded ? Buffer.from(decoded, 'base64').toString() : '';
    return res.ok && text.includes('consumer/inbox') ? 'the Web UI decodes payloads with it (checked on the demo\'s input)' : `decoding FAILED (HTTP ${res.status})`;
  } catch (e) {
    return `check FAILED: ${(e as Error).message}`;
  }
}
