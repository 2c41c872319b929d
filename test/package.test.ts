import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './support/cluster.js';
import { makeAsset } from './support/transfers.js';

/**
 * ferry as another project gets it: `npm pack` (which builds it through `prepare`), the tarball
 * installed into a copy of examples/client-app, the example typechecked against the shipped .d.ts
 * and run against a dev server with ferry's workers; the installed `ferry` bin answers too.
 */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let work: string;
let app: string;
let cluster: Cluster;

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { ...process.env, ...env }, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'ferry-package-'));
  cluster = await startCluster();
  makeAsset(cluster.root, 'provider/assets/demo.bin', 300_000);
  await Promise.all([
    cluster.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }] }),
    cluster.dataPlane({ instanceId: 'consumer-dp', fileRoot: cluster.root }),
    cluster.controlPlane({
      connectorId: 'provider',
      dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }],
      assets: { 'demo-asset': { endpointType: 'File', endpoint: path.join(cluster.root, 'provider/assets/demo.bin') } },
      // the agreement the example transfers under (as `npm run dev` configures it)
      agreements: { 'demo-agreement': { assetId: 'demo-asset', counterparty: 'consumer' } },
    }),
    cluster.dataPlane({ instanceId: 'provider-dp', fileRoot: cluster.root, provisioners: [] }),
  ]);
}, 180_000);

afterAll(async () => {
  await cluster?.shutdown();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the ferry package', () => {
  it('packs (building JS, .d.ts and workflow bundles), installs into the example app, typechecks and runs there', async () => {
    const packed = await sh('npm', ['pack', '--pack-destination', work, '--loglevel=error'], REPO_ROOT);
    expect(packed.code, packed.out).toBe(0);
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    expect(tarball, packed.out).toBeDefined();
    const listing = await sh('tar', ['-tzf', path.join(work, tarball!)], work);
    for (const file of ['package/dist/src/index.js', 'package/dist/src/index.d.ts', 'package/dist/worker/cli.js', 'package/dist/bundles/controlPlane.js', 'package/dist/bundles/manifest.json']) {
      expect(listing.out, file).toContain(file);
    }
    expect(listing.out).not.toMatch(/package\/test\//);

    app = path.join(work, 'client-app');
    cpSync(path.join(REPO_ROOT, 'examples', 'client-app'), app, { recursive: true, filter: (src) => !/node_modules|dist/.test(path.relative(REPO_ROOT, src)) });
    const pkg = JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    pkg.dependencies.ferry = `file:${path.join(work, tarball!)}`;
    writeFileSync(path.join(app, 'package.json'), JSON.stringify(pkg, null, 2));

    const installed = await sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], app);
    expect(installed.code, installed.out).toBe(0);

    // typechecks against the shipped declarations (a type error fails here)
    const built = await sh('npx', ['tsc', '-p', '.'], app);
    expect(built.code, built.out).toBe(0);

    // the connector's payload codec keys, as every ferry client needs them
    const env = { TEMPORAL_ADDRESS: cluster.temporal.address, TEMPORAL_NAMESPACE: 'default', FERRY_CODEC_KEYS: cluster.codecKeys.serialize(), HOME: work, XDG_CONFIG_HOME: work };
    const ran = await sh(process.execPath, ['dist/main.js'], app, env);
    expect(ran.out).toMatch(/started [0-9a-f-]{36} \(workflow transfer-consumer-[0-9a-f-]{36}\) on /);
    expect(ran.out).toContain('ended COMPLETED: transfer completed');
    expect(ran.out).toContain('moved 300000 bytes');
    expect(ran.code, ran.out).toBe(0);

    const help = await sh('npx', ['--no-install', 'ferry', '--help'], app);
    expect(help.code, help.out).toBe(0);
    expect(help.out).toContain('Usage: ferry [options] [command]');
    const listed = await sh('npx', ['--no-install', 'ferry', 'transfer', 'list', '--role', 'CONSUMER', '--asset', 'demo-asset', '--json'], app, env);
    expect(listed.code, listed.out).toBe(0);
    const processId = /started ([0-9a-f-]{36})/.exec(ran.out)![1]!;
    // what the example started is there (visibility may trail a moment)
    await expect
      .poll(async () => (await sh('npx', ['--no-install', 'ferry', 'transfer', 'list', '--json'], app, env)).out, { timeout: 20_000, interval: 500 })
      .toContain(processId);
  });
});
