import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataFlowWorkflowId, inClusterAddress } from '../../src/ids.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { killAll, spawnWorker } from '../support/processes.js';
import { makeAsset, providerPidOf, sha256File } from '../support/transfers.js';

/**
 * The provider's data plane runs as its own OS process. It is SIGKILLed while the bytes move and
 * started again: Temporal retries the transfer on the new process, which resumes it.
 */
let cluster: Cluster;
let asset: { file: string; sha256: string };
let configFile: string;
const startDataPlaneProcess = () => spawnWorker('dataPlaneWorker', configFile, { env: cluster.workerEnv('provider-dp') });

beforeAll(async () => {
  cluster = await startCluster();
  // 48 MiB at 2 MiB/s: about 24 s of transfer to kill the worker in (the kill follows the first heartbeat
  // with progress; at 8 MiB/s the 5 s left were a margin a loaded machine could use up before the kill)
  asset = makeAsset(cluster.root, 'assets/big.bin', 48 * 1024 * 1024);
  configFile = path.join(cluster.root, 'provider-dp.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      instanceId: 'provider-dp',
      temporal: cluster.temporal,
      fileRoot: cluster.root,
      provisioners: [],
      rateLimitBytesPerSec: 2 * 1024 * 1024,
      dataFlow: { transferHeartbeatTimeout: '2s' },
    }),
  );
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: cluster.root, provisioners: [{ kind: 'file-destination' }] }),
    cluster.controlPlane({ connectorId: 'provider', dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }], assets: { big: { endpointType: 'File', endpoint: asset.file, endpointProperties: [] } }, agreements: { 'agreement-1': { assetId: 'big', counterparty: 'consumer' } } }),
  ]);
});

afterAll(async () => {
  killAll();
  await cluster?.shutdown();
});

describe('crash recovery', () => {
  it('a data-plane worker SIGKILLed mid-transfer and restarted: the transfer completes, sha256 equal', async () => {
    let worker = await startDataPlaneProcess();
    const { processId } = await cluster.ferry.startTransfer({
      connectorId: 'consumer',
      counterpartyAddress: inClusterAddress('provider'),
      agreementId: 'agreement-1',
      assetId: 'big',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'inbox' },
    });
    const providerPid = await providerPidOf(cluster.ferry, 'consumer', processId);
    const flow = cluster.client.workflow.getHandle(dataFlowWorkflowId('provider', providerPid));

    // wait until the transfer has heartbeated progress: the bytes are moving
    const deadline = Date.now() + 60_000;
    let offset = 0;
    while (Date.now() < deadline && offset === 0) {
      const pending = (await flow.describe().catch(() => undefined))?.raw.pendingActivities ?? [];
      const details = pending.find((a) => a.activityType?.name === 'transfer')?.heartbeatDetails?.payloads?.[0];
      if (details) offset = (await cluster.decodePayload<{ offset: number }>(details)).offset;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(48 * 1024 * 1024);

    worker.kill('SIGKILL');
    await once(worker, 'exit');
    worker = await startDataPlaneProcess();

    const result = await cluster.ferry.result('consumer', processId);
    expect(result.state).toBe('COMPLETED');
    const status = await cluster.ferry.status('consumer', processId);
    expect(await sha256File(path.join(status.dataDestination!.endpoint, 'big.bin'))).toBe(asset.sha256);
    // the transfer activity really ran twice: once on the killed process, once on the new one
    const history = await flow.fetchHistory();
    const attempts = (history.events ?? []).flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 1] : []));
    expect(Math.max(...attempts)).toBeGreaterThanOrEqual(2);
    worker.kill('SIGTERM');
    await once(worker, 'exit');
  });
});
