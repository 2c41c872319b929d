import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema, parseConfig } from '../src/config.js';
import { SEARCH_ATTRIBUTES } from '../worker/devServer.js';

/** The example deployment must keep up with the config schemas (and with the workflows' search attributes). */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file: string) => readFileSync(path.join(REPO_ROOT, file), 'utf8');
const json = (file: string): unknown => JSON.parse(read(file));

describe('deploy/ configs', () => {
  const controlPlane = parseConfig(ControlPlaneConfigSchema, json('deploy/control-plane.json'), 'deploy/control-plane.json');
  const dataPlane = parseConfig(DataPlaneConfigSchema, json('deploy/data-plane.json'), 'deploy/data-plane.json');

  it('validate against the worker schemas and point at the compose Temporal service', () => {
    expect(controlPlane.temporal.address).toBe('temporal:7233');
    expect(dataPlane.temporal.address).toBe('temporal:7233');
  });

  it('name data planes that exist; carry no keys (keys come from the environment or key files)', () => {
    expect(controlPlane.dataPlanes.map((d) => d.id)).toContain(dataPlane.instanceId);
    for (const file of ['deploy/control-plane.json', 'deploy/data-plane.json']) expect(read(file)).not.toMatch(/secretKey|tokenKey|callbackKey/);
  });

  it('keep File assets under the data plane file root', () => {
    for (const [id, address] of Object.entries(controlPlane.assets)) {
      if (address.endpointType !== 'File') continue;
      expect(path.posix.relative(dataPlane.fileRoot, address.endpoint).startsWith('..'), `asset ${id}`).toBe(false);
    }
  });
});

describe('docker-compose.yml', () => {
  const compose = read('docker-compose.yml');

  it('registers every search attribute the workflows set', () => {
    // The CLI's names for the SDK's search attribute types.
    const cliType: Record<string, string> = { KEYWORD: 'Keyword', TEXT: 'Text', INT: 'Int', DOUBLE: 'Double', BOOL: 'Bool', DATETIME: 'Datetime', KEYWORD_LIST: 'KeywordList' };
    for (const attr of SEARCH_ATTRIBUTES) expect(compose).toContain(`${attr.name}=${cliType[attr.type]}`);
  });

  it('mounts the deploy configs the workers read', () => {
    expect(compose).toContain('./deploy/control-plane.json:/config/control-plane.json');
    expect(compose).toContain('./deploy/data-plane.json:/config/data-plane.json');
    expect(compose).toContain('worker/controlPlaneWorker.ts');
    expect(compose).toContain('worker/dataPlaneWorker.ts');
  });
});
