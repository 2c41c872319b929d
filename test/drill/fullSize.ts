import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeRandom } from '../../bench/datapath.js';
import { dataFlowWorkflowId, inClusterAddress } from '../../src/ids.js';
import { startCluster } from '../support/cluster.js';
import { providerPidOf, sha256File } from '../support/transfers.js';

/**
 * `npm run drill:full-size`: the two transfers issue 9 says must complete with default settings,
 * at full size, on a real (in-memory) Temporal dev server with real workers:
 *
 *   - a 4 GiB File push (uncapped; 30 s heartbeat timeout, heartbeats every 1 s);
 *   - a push capped at 64 KiB/s (16 MiB: about 4.3 minutes, ten heartbeat timeouts).
 *
 * Prints, for each, the outcome, the time, the attempts of the transfer activity and whether the
 * delivered file's sha256 equals the source's. Needs about 9 GiB free under --dir (default the OS
 * temp dir). --size-mib and --slow-mib change the sizes.
 */

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'size-mib': { type: 'string', default: '4096' }, 'slow-mib': { type: 'string', default: '16' }, dir: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } });
  if (values.help) {
    console.log('Usage: npm run drill:full-size -- [--size-mib N (4096)] [--slow-mib N (16)] [--dir DIR]\n\nA File push of N MiB and a 64 KiB/s push of the slow size, every DataFlow setting at its default, on an embedded dev server; both must complete with their bytes verified. Needs about 2 × size-mib free in DIR (the temp dir by default).');
    return;
  }
  for (const [name, v] of [['size-mib', values['size-mib']], ['slow-mib', values['slow-mib']]] as const) {
    if (!/^[1-9]\d*$/.test(v)) throw new Error(`--${name} must be a positive whole number of MiB, not ${v}`);
  }
  const bigBytes = Number(values['size-mib']) * MiB;
  const slowBytes = Number(values['slow-mib']) * MiB;
  if (values.dir) process.env.TMPDIR = values.dir;
  const cluster = await startCluster();
  try {
    const assets = path.join(cluster.root, 'assets');
    await mkdir(assets, { recursive: true });
    console.log(`writing a ${bigBytes / MiB} MiB and a ${slowBytes / MiB} MiB asset under ${assets}`);
    const big = { file: path.join(assets, 'big.bin'), sha256: await writeRandom(path.join(assets, 'big.bin'), bigBytes) };
    const slow = { file: path.join(assets, 'slow.bin'), sha256: await writeRandom(path.join(assets, 'slow.bin'), slowBytes) };
    // every DataFlow setting at its default; the slow provider is capped at 64 KiB/s
    await Promise.all([
      cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }] }),
      cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: cluster.root }),
      cluster.controlPlane({ connectorId: 'provider-big', dataPlanes: [{ id: 'provider-big-dp', transferTypes: ['File-PUSH'] }], assets: { big: { endpointType: 'File', endpoint: big.file, endpointProperties: [] } }, agreements: { 'agreement-big': { assetId: 'big', counterparty: 'consumer' } } }),
      cluster.dataPlane({ instanceId: 'provider-big-dp', fileRoot: cluster.root, provisioners: [] }),
      cluster.controlPlane({ connectorId: 'provider-slow', dataPlanes: [{ id: 'provider-slow-dp', transferTypes: ['File-PUSH'] }], assets: { slow: { endpointType: 'File', endpoint: slow.file, endpointProperties: [] } }, agreements: { 'agreement-slow': { assetId: 'slow', counterparty: 'consumer' } } }),
      cluster.dataPlane({ instanceId: 'provider-slow-dp', fileRoot: cluster.root, provisioners: [], rateLimitBytesPerSec: 64 * 1024 }),
    ]);
    const runs = [
      { name: `${bigBytes / MiB} MiB File push, defaults`, provider: 'provider-big', asset: 'big', source: big },
      { name: `${slowBytes / MiB} MiB at 64 KiB/s, defaults`, provider: 'provider-slow', asset: 'slow', source: slow },
    ];
    let failed = false;
    await Promise.all(
      runs.map(async (run) => {
        const t0 = Date.now();
        const { processId } = await cluster.ferry.startTransfer({
          connectorId: 'consumer',
          counterpartyAddress: inClusterAddress(run.provider),
          agreementId: `agreement-${run.asset}`,
          assetId: run.asset,
          transferType: 'File-PUSH',
          dataDestination: { endpointType: 'File', endpoint: `inbox-${run.asset}` },
        });
        const result = await cluster.ferry.result('consumer', processId);
        const seconds = (Date.now() - t0) / 1000;
        const status = await cluster.ferry.status('consumer', processId);
        const providerPid = await providerPidOf(cluster.ferry, 'consumer', processId);
        const history = await cluster.client.workflow.getHandle(dataFlowWorkflowId(run.provider, providerPid)).fetchHistory();
        const attempts = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes && e.activityTaskStartedEventAttributes.attempt).map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1);
        const delivered = path.join(status.dataDestination!.endpoint, `${run.asset}.bin`);
        const sha = result.state === 'COMPLETED' ? await sha256File(delivered) : undefined;
        const ok = result.state === 'COMPLETED' && sha === run.source.sha256;
        if (!ok) failed = true;
        console.log(`${run.name}: ${result.state} (${result.reason}) in ${seconds.toFixed(1)} s; most attempts of one activity ${Math.max(...attempts)}; sha256 ${sha === run.source.sha256 ? 'equal' : `DIFFERENT (${sha ?? 'nothing delivered'})`}`);
        await rm(delivered, { force: true });
      }),
    );
    if (failed) process.exitCode = 1;
  } finally {
    await cluster.shutdown();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
