import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FerryClient } from '../src/client.js';
import { SecretBox } from '../src/secrets.js';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from './bundle.js';
import { startControlPlaneWorker } from './controlPlaneWorker.js';
import { startDataPlaneWorker } from './dataPlaneWorker.js';
import { demoConfigs, DEMO_AGREEMENT, DEMO_ASSET, devSecretKey, ensureDemoAsset } from './demo.js';
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
      data: { type: 'string', default: process.env.FERRY_DATA_DIR ?? path.join(REPO_ROOT, '.data') },
    },
  });
  installRuntime();
  const dataDir = path.resolve(values.data!);
  const cli = resolveTemporalCli();
  console.log(`Temporal CLI: ${cli.type === 'existing-path' ? `${cli.path} (${cli.source})` : 'SDK download'}`);
  const env = await startDevServer({ dbFile: path.join(dataDir, 'temporal.db'), port: Number(values.port), uiPort: Number(values['ui-port']) });
  const ui = `http://localhost:${values['ui-port']}`;
  const temporal = { address: env.connection.options.address ?? `localhost:${values.port}`, namespace: 'default' };
  const fileRoot = path.join(dataDir, 'files');
  const secretKey = devSecretKey(dataDir);
  const asset = ensureDemoAsset(fileRoot);
  const cfg = demoConfigs({ temporal, fileRoot, secretKey });

  // one bundle per plane, shared by that plane's workers
  const [controlPlane, dataPlane] = await Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]);
  const workers = [
    await startControlPlaneWorker(cfg.consumer, { workflowBundle: controlPlane }),
    await startControlPlaneWorker(cfg.provider, { workflowBundle: controlPlane }),
    await startDataPlaneWorker(cfg.consumerDp, { workflowBundle: dataPlane }),
    await startDataPlaneWorker(cfg.providerDp, { workflowBundle: dataPlane }),
  ];
  const uiAnswer = await fetch(ui).then((r) => `HTTP ${r.status}`, (e: Error) => `not reachable: ${e.message}`);
  console.log(`Temporal dev server at ${temporal.address}, Web UI at ${ui} (${uiAnswer})`);
  // the SQLite file keeps every earlier transfer across restarts
  const earlier = await env.client.workflow.count(`WorkflowType = 'transferProcessWorkflow'`);
  console.log(`${earlier.count} transfer processes recorded in ${path.join(dataDir, 'temporal.db')}`);

  const ferry = new FerryClient(env.client, SecretBox.fromBase64(secretKey));
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

  if (!values.once) {
    console.log(`Up. Start more transfers with \`npm run ferry -- start …\`; Ctrl-C stops everything.`);
    await untilSignal();
  }
  console.log('Shutting down…');
  for (const w of workers.reverse()) await w.shutdown();
  await env.teardown();
  if (result.state !== 'COMPLETED') process.exitCode = 1;
});
