import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { DataPlaneConfigSchema } from '../../src/config.js';
import type { DataAddress } from '../../src/DataAddress.js';
import { Keyring } from '../../src/keys.js';
import { bundle, DATA_PLANE_WORKFLOWS } from '../../worker/bundle.js';
import { startDataPlaneWorker } from '../../worker/dataPlaneWorker.js';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startProvisioningService } from '../fixtures/provisioningService.js';

/**
 * ferry's data plane for the DPS TCK's data-plane tests (DP_C_*, DP_P_*): one data-plane worker
 * with the DPS API, the TCK as its configured control plane (static bearer token), a public API for
 * pulls, and the datasets each test names (`<TEST>_DATASETID`):
 *
 * - consumer pushes land at a loopback sink (an HttpData destination);
 * - provider pushes read a live feed that has produced nothing yet: the TCK names its own callback
 *   root as the push destination, which answers 404 to anything, so a push must not have begun
 *   while a test looks at the flow;
 * - provider pulls serve a small file (the async one a feed);
 * - the async tests' datasets lie under `async/` (files) or `/async/` (the feed), where a provisioning
 *   service that answers 202 (pending) applies: that is what makes prepare/start asynchronous.
 */
export const TCK_PROVIDER_ID = 'did:web:ferry-provider.example';

const DATASETS = {
  consumerPush: 'tck-consumer-push',
  consumerPushAsync: 'tck-consumer-push-async',
  consumerPullAsync: 'tck-consumer-pull-async',
  providerPush: 'tck-provider-push',
  providerPushFinite: 'tck-provider-push-finite',
  providerPushAsync: 'tck-provider-push-async',
  providerPull: 'tck-provider-pull',
  providerPullAsync: 'tck-provider-pull-async',
} as const;

/** Which dataset each DP test uses (ConfigParam `<METHOD>_DATASETID`). */
const TEST_DATASETS: Record<string, string> = {
  ...Object.fromEntries(['01_01', '01_02', '02_01', '02_02', '03_01'].map((t) => [`DP_C_PUSH_${t}`, DATASETS.consumerPush])),
  DP_C_PUSH_04_01: DATASETS.consumerPushAsync,
  DP_C_PULL_04_01: DATASETS.consumerPullAsync,
  ...Object.fromEntries(['01_01', '01_02', '02_01', '02_02'].map((t) => [`DP_P_PUSH_${t}`, DATASETS.providerPush])),
  DP_P_PUSH_03_01: DATASETS.providerPushFinite,
  DP_P_PUSH_04_01: DATASETS.providerPushAsync,
  ...Object.fromEntries(['01_01', '01_02', '02_01', '02_02'].map((t) => [`DP_P_PULL_${t}`, DATASETS.providerPull])),
  DP_P_PULL_04_01: DATASETS.providerPullAsync,
  ...Object.fromEntries(['01_01', '02_01', '02_02'].map((t) => [`DP_P_HTTP_PULL_${t}`, DATASETS.providerPull])),
};

export interface DataPlaneSide {
  dpsUrl: string;
  authorization: string;
  properties(): string[];
  shutdown(): Promise<void>;
}

export async function startDataPlaneSide(opts: { env: TestWorkflowEnvironment; codec: Keyring; root: string; tckCallbackAddress: string; tckPort: number }): Promise<DataPlaneSide> {
  const fileRoot = path.join(opts.root, 'dp-files');
  mkdirSync(path.join(fileRoot, 'assets'), { recursive: true });
  writeFileSync(path.join(fileRoot, 'assets', 'tck.txt'), 'ferry DPS TCK asset\n');
  const sink = await listen((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end());
  });
  // a live source with nothing to send yet: the response stays open until the flow stops reading it
  const feed = await listen(() => undefined);
  const provisioning = await startProvisioningService({ mode: 'async', fileRoot });
  const token = `tck-dps-${randomBytes(16).toString('hex')}`;
  const file = (endpoint: string): DataAddress => ({ endpointType: 'File', endpoint, endpointProperties: [] });
  const http = (endpoint: string): DataAddress => ({ endpointType: 'HttpData', endpoint, endpointProperties: [] });
  const config = DataPlaneConfigSchema.parse({
    instanceId: 'ferry-dps-tck',
    temporal: { address: opts.env.connection.options.address!, namespace: 'default' },
    fileRoot,
    provisioners: [
      { kind: 'file-destination' },
      { kind: 'http', name: 'async-files', url: provisioning.url, side: 'destination', endpointTypes: ['File'], endpointPrefix: 'async/' },
      { kind: 'http', name: 'async-feeds', url: provisioning.url, side: 'source', endpointTypes: ['HttpData'], endpointPrefix: `${feed.url}/async/` },
    ],
    publicApi: { host: '127.0.0.1', port: 0 },
    // the feeds, the sink and the TCK's own endpoints are on loopback: allowed explicitly (the default network policy refuses it)
    allowedNetworks: ['127.0.0.0/8', '::1/128'],
    dataFlow: { transferHeartbeatTimeout: '10m' },
    dps: {
      host: '127.0.0.1',
      port: 0,
      controlPlanes: [{ id: 'tck', endpoint: opts.tckCallbackAddress, inboundToken: token }],
      datasets: {
        [DATASETS.consumerPush]: { destination: http(`${sink.url}/inbox`) },
        [DATASETS.consumerPushAsync]: { destination: file('async/push-inbox') },
        [DATASETS.consumerPullAsync]: { destination: file('async/pull-inbox') },
        [DATASETS.providerPush]: { source: http(`${feed.url}/feed`) },
        [DATASETS.providerPushFinite]: { source: file('assets/tck.txt') },
        [DATASETS.providerPushAsync]: { source: http(`${feed.url}/async/feed`) },
        [DATASETS.providerPull]: { source: file('assets/tck.txt') },
        [DATASETS.providerPullAsync]: { source: http(`${feed.url}/async/pull-source`) },
      },
      // the TCK serves its client DID document over plain HTTP on loopback
      didWebHttp: true,
    },
  });
  const dp = await startDataPlaneWorker(config, {
    workflowBundle: await bundle(DATA_PLANE_WORKFLOWS),
    keys: { codec: opts.codec, edr: Keyring.generate('tck-dps-edr'), callback: Keyring.generate('tck-dps-callback') },
  });
  return {
    dpsUrl: dp.dpsUrl!,
    authorization: `Bearer ${token}`,
    properties: () => [
      'dataspacetck.test.package=org.eclipse.dataspacetck.dps.verification.dataplane',
      `dataspacetck.dps.dataplane.url=${dp.dpsUrl}`,
      `dataspacetck.dps.dataplane.authorization=Bearer ${token}`,
      `dataspacetck.dps.dataplane.provider.id=${TCK_PROVIDER_ID}`,
      // the TCK signs token renewals as this did:web (its callback address); refresh tokens are bound to the counterparty
      `dataspacetck.dps.dataplane.counterparty.id=did:web:localhost%3A${opts.tckPort}`,
      ...Object.entries(TEST_DATASETS).map(([test, dataset]) => `${test}_DATASETID=${dataset}`),
    ],
    async shutdown() {
      await dp.shutdown();
      feed.close();
      sink.close();
      await provisioning.close();
    },
  };
}

async function listen(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; close(): void; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
