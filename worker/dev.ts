import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FerryClient } from '../src/client.js';
import { EncryptionCodec, ferryDataConverter } from '../src/codec.js';
import { workflowUrl } from '../src/connection.js';
import { startCodecServer } from './codecServer.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from './bundle.js';
import { startControlPlaneWorker } from './controlPlaneWorker.js';
import { startDataPlaneWorker } from './dataPlaneWorker.js';
import { demoConfigs, DEMO_AGREEMENT, DEMO_ASSET, devCodecServerToken, devKeys, ensureDemoAsset } from './demo.js';
import { startDevServer } from './devServer.js';
import { setupNamespace } from './namespaceSetup.js';
import { installRuntime, runMain } from './runtime.js';
import { REPO_ROOT, resolveTemporalCli } from './temporalCli.js';

/**
 * `npm run dev`: the whole engine on one machine. An embedded Temporal dev server (SQLite under
 * .data/, Web UI on :8233), a codec server for the UI, control-plane and data-plane workers for a
 * consumer and a provider connector, and one real demo transfer. Stays up until Ctrl-C or SIGTERM,
 * which stop everything it started (the Temporal server included) at any point, start-up too.
 */

export const DEV_HELP = `Usage: npm run dev [-- options]

Starts a Temporal dev server (SQLite under --data, Web UI on, payloads decoded by a local codec
server), a control-plane and a data-plane worker for two connectors (consumer, provider), runs a
demo File push and stays up until Ctrl-C or SIGTERM (a second signal exits at once).

Options:
  --once            end after the demo transfer (exit 0 when it COMPLETED)
  --port N          Temporal gRPC port (default 7233, or $FERRY_DEV_PORT)
  --ui-port N       Web UI port (default 8233, or $FERRY_DEV_UI_PORT)
  --codec-port N    codec server port (default a free one, or $FERRY_DEV_CODEC_PORT)
  --data DIR        database, files and dev keys (default .data, or $FERRY_DATA_DIR)
  -h, --help        this help`;

runMain(async () => {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        once: { type: 'boolean', default: false },
        port: { type: 'string', default: process.env.FERRY_DEV_PORT ?? '7233' },
        'ui-port': { type: 'string', default: process.env.FERRY_DEV_UI_PORT ?? '8233' },
        'codec-port': { type: 'string', default: process.env.FERRY_DEV_CODEC_PORT ?? '0' },
        data: { type: 'string', default: process.env.FERRY_DATA_DIR ?? path.join(REPO_ROOT, '.data') },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${DEV_HELP}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(DEV_HELP);
    return;
  }

  // Signals first: a SIGTERM during start-up must still stop whatever was started by then.
  const stop = new AbortController();
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      console.log(`${signal} again: exiting now`);
      process.exit(130);
    }
    console.log(`${signal}: shutting down…`);
    stop.abort(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A wrapper that dies without passing the signal on (`sh -c`, npx) leaves us orphaned: stop then too.
  const parent = process.ppid;
  const orphanWatch = setInterval(() => {
    if (process.ppid !== parent && !stop.signal.aborted) {
      console.log(`parent process ${parent} is gone: shutting down…`);
      stop.abort('orphaned');
    }
  }, 500);
  orphanWatch.unref();
  const cleanup: (() => Promise<void>)[] = [];
  let outcome: 'COMPLETED' | 'other' | 'stopped' = 'stopped';

  try {
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
    cleanup.push(() => codecServer.close());
    const codecUrl = codecServer.url.replace('localhost', '127.0.0.1');
    const uiCodecEndpoint = `${codecUrl}/t/${codecToken.token}`;
    if (stop.signal.aborted) return;
    const env = await startDevServer({
      dbFile: path.join(dataDir, 'temporal.db'),
      port: Number(values.port),
      uiPort: Number(values['ui-port']),
      dataConverter: ferryDataConverter(keys.controlPlane.codec),
      uiCodecEndpoint,
    });
    cleanup.push(() => env.teardown());
    // a database from an earlier version may lack search attributes added since
    await setupNamespace(env.connection, 'default');
    if (stop.signal.aborted) return;
    const temporal = { address: env.connection.options.address ?? `localhost:${values.port}`, namespace: 'default' };
    const fileRoot = path.join(dataDir, 'files');
    const asset = ensureDemoAsset(fileRoot);
    const cfg = demoConfigs({ temporal, fileRoot });

    // one bundle per plane, shared by that plane's workers
    const [controlPlane, dataPlane] = await Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]);
    const connectOnce = { connect: { retry: { maxAttempts: 1 } } };
    for (const start of [
      () => startControlPlaneWorker(cfg.consumer, { workflowBundle: controlPlane, keys: keys.controlPlane, ...connectOnce }),
      () => startControlPlaneWorker(cfg.provider, { workflowBundle: controlPlane, keys: keys.controlPlane, ...connectOnce }),
      () => startDataPlaneWorker(cfg.consumerDp, { workflowBundle: dataPlane, keys: keys.consumerDp, ...connectOnce }),
      () => startDataPlaneWorker(cfg.providerDp, { workflowBundle: dataPlane, keys: keys.providerDp, ...connectOnce }),
    ]) {
      if (stop.signal.aborted) return;
      const w = await start();
      cleanup.push(() => w.shutdown());
    }
    const uiAnswer = await fetch(ui).then((r) => `HTTP ${r.status}`, (e: Error) => `not reachable: ${e.message}`);
    console.log(`Temporal dev server at ${temporal.address}, Web UI at ${ui} (${uiAnswer})`);
    // the SQLite file keeps every earlier transfer across restarts
    const earlier = await env.client.workflow.count(`WorkflowType = 'transferProcess'`);
    console.log(`${earlier.count} transfer processes recorded in ${path.join(dataDir, 'temporal.db')}`);
    if (stop.signal.aborted) return;

    const ferry = new FerryClient(env.client);
    const started = await ferry.startTransfer({
      connectorId: 'consumer',
      counterpartyAddress: cfg.providerAddress,
      agreementId: DEMO_AGREEMENT,
      assetId: DEMO_ASSET,
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
    });
    const link = (id: string) => workflowUrl(ui, 'default', id);
    console.log(`Demo transfer ${started.processId}`);
    console.log(`  consumer TransferProcess  ${link(started.workflowId)}`);
    console.log(`  consumer DataFlow         ${link(`dataflow-consumer-${started.processId}`)}`);
    const result = await Promise.race([ferry.result('consumer', started.processId), stopped.then(() => undefined)]);
    if (!result) return;
    const status = await ferry.status('consumer', started.processId);
    console.log(`  provider TransferProcess  ${link(`transfer-provider-${status.counterpartyPid}`)}`);
    console.log(`  provider DataFlow         ${link(`dataflow-provider-${status.counterpartyPid}`)}`);
    console.log(`Demo transfer ${result.state}: ${result.reason}`);
    outcome = result.state === 'COMPLETED' ? 'COMPLETED' : 'other';
    if (result.state === 'COMPLETED') {
      const delivered = path.join(status.dataDestination!.endpoint, 'demo.bin');
      const sha256 = createHash('sha256').update(readFileSync(delivered)).digest('hex');
      console.log(`  delivered ${delivered}: sha256 ${sha256} ${sha256 === asset.sha256 ? 'equals the source' : `DIFFERS from the source ${asset.sha256}`}`);
      if (sha256 !== asset.sha256) outcome = 'other';
    }

    console.log(`Codec server at ${codecUrl}: ${await checkCodecServer(ui, uiCodecEndpoint, started.workflowId, env)}`);
    console.log(`  the CLI: temporal workflow show -w <id> --codec-endpoint ${codecUrl} --codec-auth "Bearer $(cut -d: -f2 ${path.join(dataDir, 'keys', 'codec-server.tokens')})"`);

    if (!values.once) {
      console.log(`Up. Start more transfers with \`npm run ferry -- start …\`; Ctrl-C stops everything.`);
      await stopped;
    }
  } finally {
    console.log('Shutting down…');
    for (const step of cleanup.reverse()) await step().catch((e: unknown) => console.error(`shutdown: ${(e as Error).message}`));
    console.log('Stopped.');
  }
  // a signal is a normal way to stop; --once reports the demo's outcome
  if (values.once && outcome !== 'COMPLETED' && !stop.signal.aborted) process.exitCode = 1;
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
