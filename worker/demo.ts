import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ControlPlaneConfig, DataPlaneConfig } from '../src/config.js';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../src/config.js';
import { inClusterAddress } from '../src/ids.js';
import { Keyring } from '../src/keys.js';
import type { ControlPlaneKeys } from './controlPlaneWorker.js';
import type { DataPlaneKeys } from './dataPlaneWorker.js';

/** The demo setup `npm run dev` runs: a consumer and a provider connector on one cluster. */

export const DEMO_ASSET = 'demo-asset';
export const DEMO_AGREEMENT = 'demo-agreement';
/** Data planes refuse private networks unless allowed; the demo's HTTP endpoints are on loopback. */
const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/**
 * A key ring kept in `<dataDir>/keys/<name>.keys`, made on first use (mode 0600): kept beside the dev
 * database, so a restart still reads the histories and honours the URLs and tokens of earlier runs.
 * The files have the format of the `FERRY_*_KEYS_FILE` variables, so the CLI and a worker started
 * by hand can use them.
 */
export function devKeyring(dataDir: string, name: string): Keyring {
  const file = path.join(dataDir, 'keys', `${name}.keys`);
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${Keyring.generate().serialize()}\n`, { mode: 0o600, flag: 'wx' });
  }
  return Keyring.parse(readFileSync(file, 'utf8'), file);
}

/** The dev codec server's token (`dev:<random>` in `<dataDir>/keys/codec-server.tokens`), made on first use. */
export function devCodecServerToken(dataDir: string): { id: string; token: string } {
  const file = path.join(dataDir, 'keys', 'codec-server.tokens');
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `dev:${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  }
  const [id, token] = readFileSync(file, 'utf8').trim().split(':') as [string, string];
  return { id, token };
}

/** The dev setup's keys: one codec ring for the cluster, EDR and callback rings per data plane. */
export function devKeys(dataDir: string): { controlPlane: ControlPlaneKeys; consumerDp: DataPlaneKeys; providerDp: DataPlaneKeys } {
  const codec = devKeyring(dataDir, 'codec');
  const dataPlane = (id: string): DataPlaneKeys => ({ codec, edr: devKeyring(dataDir, `${id}.edr`), callback: devKeyring(dataDir, `${id}.callback`) });
  return { controlPlane: { codec }, consumerDp: dataPlane('consumer-dp-1'), providerDp: dataPlane('provider-dp-1') };
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

export function demoConfigs(opts: { temporal: { address: string; namespace: string }; fileRoot: string }) {
  const consumer: ControlPlaneConfig = ControlPlaneConfigSchema.parse({
    connectorId: 'consumer',
    temporal: opts.temporal,
    dataPlanes: [{ id: 'consumer-dp-1', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
  });
  const provider: ControlPlaneConfig = ControlPlaneConfigSchema.parse({
    connectorId: 'provider',
    temporal: opts.temporal,
    dataPlanes: [{ id: 'provider-dp-1', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
    assets: { [DEMO_ASSET]: { endpointType: 'File', endpoint: path.join(opts.fileRoot, 'provider', 'assets', 'demo.bin') } },
    // the consumer connector may transfer the demo asset (in-cluster requests are admitted like DSP ones)
    agreements: { [DEMO_AGREEMENT]: { assetId: DEMO_ASSET, counterparty: 'consumer' } },
  });
  const consumerDp: DataPlaneConfig = DataPlaneConfigSchema.parse({
    instanceId: 'consumer-dp-1',
    temporal: opts.temporal,
    fileRoot: opts.fileRoot,
    provisioners: [{ kind: 'file-destination' }],
    // the dev setup's HTTP endpoints are on this machine: loopback allowed explicitly
    allowedNetworks: LOOPBACK,
  });
  const providerDp: DataPlaneConfig = DataPlaneConfigSchema.parse({
    instanceId: 'provider-dp-1',
    temporal: opts.temporal,
    fileRoot: opts.fileRoot,
    provisioners: [],
    // pulls: EDRs point at this endpoint (a free port; the EDR carries its URL)
    publicApi: { host: '127.0.0.1', port: 0 },
    allowedNetworks: LOOPBACK,
  });
  return { consumer, provider, consumerDp, providerDp, providerAddress: inClusterAddress('provider') };
}
