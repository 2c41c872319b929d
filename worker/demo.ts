import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ControlPlaneConfig, DataPlaneConfig } from '../src/config.js';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../src/config.js';
import { inClusterAddress } from '../src/ids.js';
import { SecretBox } from '../src/secrets.js';

/** The demo setup `npm run dev` runs: a consumer and a provider connector on one cluster. */

export const DEMO_ASSET = 'demo-asset';
export const DEMO_AGREEMENT = 'demo-agreement';
/** Data planes refuse private networks unless allowed; the demo's HTTP endpoints are on loopback. */
const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/** The key that seals secrets, kept beside the dev database so restarts can read old histories. */
export function devSecretKey(dataDir: string): string {
  const file = path.join(dataDir, 'secret.key');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, SecretBox.generateKeyBase64(), { mode: 0o600 });
  }
  return readFileSync(file, 'utf8').trim();
}

/** A provider asset with real bytes (8 MiB of random data, made once). */
export function ensureDemoAsset(fileRoot: string, bytes = 8 * 1024 * 1024): { file: string; sha256: string } {
  const file = path.join(fileRoot, 'provider', 'assets', 'demo.bin');
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, randomBytes(bytes));
  }
  return { file, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') };
}

export function demoConfigs(opts: { temporal: { address: string; namespace: string }; fileRoot: string; secretKey: string }) {
  const consumer: ControlPlaneConfig = ControlPlaneConfigSchema.parse({
    connectorId: 'consumer',
    temporal: opts.temporal,
    dataPlanes: [{ id: 'consumer-dp-1', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
    secretKey: opts.secretKey,
  });
  const provider: ControlPlaneConfig = ControlPlaneConfigSchema.parse({
    connectorId: 'provider',
    temporal: opts.temporal,
    dataPlanes: [{ id: 'provider-dp-1', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
    assets: { [DEMO_ASSET]: { endpointType: 'File', endpoint: path.join(opts.fileRoot, 'provider', 'assets', 'demo.bin') } },
    // the consumer connector may transfer the demo asset (in-cluster requests are admitted like DSP ones)
    agreements: { [DEMO_AGREEMENT]: { assetId: DEMO_ASSET, counterparty: 'consumer' } },
    secretKey: opts.secretKey,
  });
  const consumerDp: DataPlaneConfig = DataPlaneConfigSchema.parse({
    instanceId: 'consumer-dp-1',
    temporal: opts.temporal,
    fileRoot: opts.fileRoot,
    provisioners: [{ kind: 'file-destination' }],
    // the dev setup's HTTP endpoints are on this machine: loopback allowed explicitly
    allowedNetworks: LOOPBACK,
    secretKey: opts.secretKey,
  });
  const providerDp: DataPlaneConfig = DataPlaneConfigSchema.parse({
    instanceId: 'provider-dp-1',
    temporal: opts.temporal,
    fileRoot: opts.fileRoot,
    provisioners: [],
    // pulls: EDRs point at this endpoint (a free port; the EDR carries its URL)
    publicApi: { host: '127.0.0.1', port: 0 },
    allowedNetworks: LOOPBACK,
    secretKey: opts.secretKey,
  });
  return { consumer, provider, consumerDp, providerDp, providerAddress: inClusterAddress('provider') };
}
