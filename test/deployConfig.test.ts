import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema, type ControlPlaneConfig, type DataPlaneConfig } from '../src/config.js';
import { loadWorkerConfig } from '../worker/workerConfig.js';

/**
 * The example deployment (docker-compose.yml, deploy/, Dockerfile) must keep up with the code: no
 * Docker engine runs here, so each service's command, environment and mounted config are checked
 * the way the worker would read them at start (loadWorkerConfig: file + FERRY_* + TEMPORAL_*).
 */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file: string) => readFileSync(path.join(REPO_ROOT, file), 'utf8');

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  init?: boolean;
  healthcheck?: { test?: string[]; disable?: boolean };
}

/** docker compose's interpolation: `${VAR:-default}` takes the default, `${VAR:?message}` the value a user must export. */
const interpolate = (text: string, exported: Record<string, string>) =>
  text.replace(/\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}/g, (_, name: string, fallback?: string) => exported[name] ?? fallback ?? '');
const compose = parse(interpolate(read('docker-compose.yml'), { FERRY_CODEC_SERVER_TOKEN: 'test-token-0123456789' }), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;
const workers = Object.entries(services).filter(([, s]) => /(control|data)PlaneWorker\.js$/.test(s.command?.[0] ?? ''));

/** What a worker service reads at start: its mounted config file (on the host) and its environment. */
function serviceConfig(name: string): { kind: 'control-plane'; config: ControlPlaneConfig } | { kind: 'data-plane'; config: DataPlaneConfig } {
  const s = services[name]!;
  const containerPath = s.command![s.command!.indexOf('--config') + 1]!;
  const mount = s.volumes!.find((v) => v.split(':')[1] === containerPath)!;
  expect(mount, `${name} mounts ${containerPath}`).toBeDefined();
  const hostFile = path.join(REPO_ROOT, mount.split(':')[0]!);
  const env = { ...s.environment, HOME: '/nonexistent' };
  return s.command![0]!.includes('controlPlane')
    ? { kind: 'control-plane', config: loadWorkerConfig(ControlPlaneConfigSchema, name, { configFile: hostFile, env }).config }
    : { kind: 'data-plane', config: loadWorkerConfig(DataPlaneConfigSchema, name, { configFile: hostFile, env }).config };
}

describe('docker-compose.yml', () => {
  it('has Temporal on PostgreSQL, its Web UI, a codec server and a control-plane and a data-plane worker per connector', () => {
    expect(services.postgresql?.image).toMatch(/^postgres:15\./);
    expect(services.temporal?.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(services['temporal-schema']?.command?.join(' ')).toContain('temporal-sql-tool');
    expect(services['temporal-ui']?.image).toMatch(/^temporalio\/ui:/);
    expect(services['codec-server']?.command?.[0]).toBe('dist/worker/codecServer.js');
    expect(workers.map(([n]) => n).sort()).toEqual(['consumer-control-plane', 'consumer-data-plane', 'provider-control-plane', 'provider-data-plane']);
  });

  it('pins every image tag (no latest, no untagged image)', () => {
    for (const [name, s] of Object.entries(services)) {
      const image = s.image!;
      expect(image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(image.endsWith(':latest'), name).toBe(false);
    }
  });

  it('every worker config validates against its schema, with the environment the service gives it', () => {
    for (const [name] of workers) {
      const { config } = serviceConfig(name);
      expect(config.temporal, name).toMatchObject({ address: 'temporal:7233', namespace: 'ferry' });
      expect(config.worker.deployment, name).toMatchObject({ name: `ferry-${name}`, buildId: 'dev' });
      expect(config.worker.metricsBindAddress, name).toBe('0.0.0.0:9464');
    }
  });

  it('control planes name data planes that exist; assets lie under the data planes\' file root', () => {
    const dataPlanes = workers.map(([n]) => serviceConfig(n)).filter((c) => c.kind === 'data-plane').map((c) => c.config as DataPlaneConfig);
    for (const [name] of workers) {
      const c = serviceConfig(name);
      if (c.kind !== 'control-plane') continue;
      for (const dp of c.config.dataPlanes) expect(dataPlanes.map((d) => d.instanceId), name).toContain(dp.id);
      for (const [id, address] of Object.entries(c.config.assets)) {
        if (address.endpointType !== 'File') continue;
        for (const dp of dataPlanes) expect(path.posix.relative(dp.fileRoot, address.endpoint).startsWith('..'), `${name} asset ${id}`).toBe(false);
      }
    }
  });

  it('keys come from key files in the environment, never from the configs', () => {
    for (const file of ['deploy/consumer-control-plane.json', 'deploy/consumer-data-plane.json', 'deploy/provider-control-plane.json', 'deploy/provider-data-plane.json']) {
      expect(read(file)).not.toMatch(/secretKey|tokenKey|callbackKey/);
    }
    const keyed = [...workers.map(([n]) => n), 'codec-server'];
    for (const name of keyed) expect(services[name]!.environment?.FERRY_CODEC_KEYS_FILE, name).toBe('/data/keys/codec.keys');
    for (const [name] of workers) {
      const c = serviceConfig(name);
      if (c.kind === 'data-plane' && c.config.publicApi) expect(services[name]!.environment?.FERRY_EDR_KEYS_FILE, name).toMatch(/^\/data\/keys\/.+\.edr\.keys$/);
    }
    // the key files keys-init writes are the ones the services read
    const made = services['keys-init']!.command!.join(' ');
    for (const s of Object.values(services)) {
      for (const [variable, value] of Object.entries(s.environment ?? {})) {
        if (variable.endsWith('_KEYS_FILE')) expect(made, variable).toContain(path.posix.basename(value, '.keys'));
      }
    }
  });

  it('the Web UI decodes through the codec server with the token the codec server accepts', () => {
    const token = services['codec-server']!.environment!.FERRY_CODEC_SERVER_TOKENS!.split(':')[1];
    expect(services['temporal-ui']!.environment!.TEMPORAL_CODEC_ENDPOINT).toBe(`http://localhost:8888/t/${token}`);
    expect(services['codec-server']!.command).toEqual(expect.arrayContaining(['--ui-origin', 'http://localhost:8080']));
  });

  it('sets the namespace and its search attributes up before any worker starts', () => {
    expect(services['ferry-setup']!.command).toEqual(['dist/worker/cli.js', 'namespace', 'setup', '--retention', '7']);
    for (const [name, s] of workers) {
      expect(s.depends_on?.['ferry-setup']?.condition, name).toBe('service_completed_successfully');
      expect(s.init, `${name} runs under an init so SIGTERM reaches node and it drains`).toBe(true);
    }
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const stages = dockerfile.split(/^FROM /m).slice(1);

  it('builds in one stage and runs production dependencies and the built code only in the last', () => {
    expect(stages).toHaveLength(2);
    expect(stages[0]).toContain('RUN npm run build');
    const runtime = stages[1]!;
    expect(runtime).toContain('npm ci --omit=dev');
    expect(runtime).toContain('COPY --from=build /app/dist ./dist');
    expect(runtime).not.toMatch(/COPY (src|workflows|activities|worker) /);
    expect(runtime).toMatch(/^USER node$/m);
    for (const s of stages) expect(s.split('\n')[0]).toMatch(/^node:\d+\.\d+\.\d+-/);
  });

  it('checks health on /healthz at the port the workers listen on', () => {
    expect(dockerfile).toMatch(/HEALTHCHECK [\s\S]*\/healthz/);
    expect(dockerfile).toContain('FERRY_WORKER__HEALTH__PORT=8081');
  });

  it('runs the entry points npm run build writes', () => {
    const built = ['dist/worker/controlPlaneWorker.js', 'dist/worker/dataPlaneWorker.js', 'dist/worker/codecServer.js', 'dist/worker/cli.js'];
    for (const s of Object.values(services)) {
      const entry = s.command?.[0];
      if (entry?.startsWith('dist/')) expect(built, entry).toContain(entry);
    }
  });
});
