import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlPlaneConfigSchema, DataPlaneConfigSchema } from '../../src/config.js';
import { connectionOptions, resolveTemporalConnection, webUiBase } from '../../src/connection.js';
import { loadWorkerConfig } from '../../worker/workerConfig.js';

/** Worker config from files and the environment, and connection settings in Temporal's conventions. */

const dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
};
/** No HOME: no temporal.toml of the machine's user gets in. */
const base = { HOME: dir, XDG_CONFIG_HOME: dir };

describe('loadWorkerConfig', () => {
  it('merges a file, Temporal variables and FERRY_* variables (strings stay strings, the rest is JSON, _FILE reads a file)', () => {
    const cfg = file('cp.json', JSON.stringify({ connectorId: 'from-file', dataPlanes: [{ id: 'dp-1' }] }));
    const { config, warnings } = loadWorkerConfig(ControlPlaneConfigSchema, 'control-plane', {
      configFile: cfg,
      env: {
        ...base,
        TEMPORAL_ADDRESS: 'temporal.example:7233',
        TEMPORAL_NAMESPACE: 'ns-1',
        FERRY_CONNECTOR_ID_FILE: file('connector-id', '12345\n'),
        FERRY_CODEC_KEYS: 'k1:not-a-setting-but-a-key-ring',
        FERRY_DEV_PORT: '7233',
        FERRY_TRANSFER__STALE_RETRIES: '5',
        FERRY_WORKER__HEALTH__PORT: '8081',
        FERRY_WORKER__DEPLOYMENT: '{"name":"ferry-cp","buildId":"abc"}',
        FERRY_DATA_DIR: '/ignored/not/a/setting',
        FERRY_NO_SUCH_THING: 'x',
      },
    });
    expect(config.connectorId).toBe('12345');
    expect(config.transfer.staleRetries).toBe(5);
    expect(config.worker.health.port).toBe(8081);
    expect(config.worker.deployment).toMatchObject({ name: 'ferry-cp', buildId: 'abc', useVersioning: false });
    expect(config.temporal).toMatchObject({ address: 'temporal.example:7233', namespace: 'ns-1' });
    expect(warnings).toEqual(['ignoring FERRY_NO_SUCH_THING: not a control-plane setting']);
  });

  it('the file\'s temporal block wins over TEMPORAL_*; FERRY_TEMPORAL__* over both', () => {
    const cfg = file('cp2.json', JSON.stringify({ connectorId: 'c', dataPlanes: [{ id: 'dp-1' }], temporal: { address: 'file:7233' } }));
    const env = { ...base, TEMPORAL_ADDRESS: 'env:7233', TEMPORAL_NAMESPACE: 'env-ns' };
    expect(loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { configFile: cfg, env }).config.temporal).toMatchObject({ address: 'file:7233', namespace: 'env-ns' });
    expect(loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { configFile: cfg, env: { ...env, FERRY_TEMPORAL__ADDRESS: 'ferry:7233' } }).config.temporal.address).toBe('ferry:7233');
  });

  it('every bad setting is reported at once, naming the variable or the file it came from', () => {
    const cfg = file('dp.json', JSON.stringify({ instanceId: 'dp-1', fileRoot: '/srv', rateLimitBytesPerSec: -1 }));
    let message = '';
    try {
      loadWorkerConfig(DataPlaneConfigSchema, 'data-plane', {
        configFile: cfg,
        env: { ...base, FERRY_WORKER__HEALTH__PORT: 'eighty', FERRY_CALLBACK__PORT: '70000', FERRY_WORKER__LOG_LEVEL: 'loud', FERRY_SECRET_KEY: 'a key where none belongs' },
      });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('FERRY_WORKER__HEALTH__PORT: worker.health.port');
    expect(message).toContain('FERRY_CALLBACK__PORT: callback.port');
    expect(message).toContain('FERRY_WORKER__LOG_LEVEL: worker.logLevel');
    expect(message).toContain(`config file ${cfg}: rateLimitBytesPerSec`);
    // keys live in their own variables (FERRY_CODEC_KEYS…), never in the config
    expect(message).toMatch(/FERRY_SECRET_KEY: secretKey: keys are not read from config files.*FERRY_CODEC_KEYS/);
  });

  it('a variable below a setting that has no such field, a missing secret file, both --config and FERRY_CONFIG_JSON: clear errors', () => {
    const env = { ...base, FERRY_CONFIG_JSON: JSON.stringify({ connectorId: 'c', dataPlanes: [{ id: 'd' }] }) };
    expect(() => loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { env: { ...env, FERRY_TRANSFER__NOPE: '1' } })).toThrow('FERRY_TRANSFER__NOPE: no setting transfer.nope in the cp config');
    expect(() => loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { env: { ...env, FERRY_CONNECTOR_ID_FILE: path.join(dir, 'absent') } })).toThrow(/FERRY_CONNECTOR_ID_FILE: cannot read .*absent/);
    expect(() => loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { configFile: file('x.json', '{}'), env })).toThrow('give either --config or FERRY_CONFIG_JSON, not both');
    expect(() => loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { env: { ...base, FERRY_CONFIG_JSON: '{nope' } })).toThrow('FERRY_CONFIG_JSON is not valid JSON');
    expect(() => loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { env: { ...env, TEMPORAL_PROFILE: 'absent' } })).toThrow("Profile 'absent' not found");
  });

  it('property: any id given as FERRY_CONNECTOR_ID arrives exactly, never coerced to a number or JSON', () => {
    const env = { ...base, FERRY_CONFIG_JSON: JSON.stringify({ dataPlanes: [{ id: 'd' }] }) };
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/), (id) => {
        expect(loadWorkerConfig(ControlPlaneConfigSchema, 'cp', { env: { ...env, FERRY_CONNECTOR_ID: id } }).config.connectorId).toBe(id);
      }),
    );
  });
});

describe('Temporal connection settings', () => {
  it('a temporal.toml profile with mTLS, then TEMPORAL_* over it; explicit settings over both', () => {
    const toml = file(
      'temporal.toml',
      `[profile.prod]\naddress = "prod.example:7233"\nnamespace = "prod"\n[profile.prod.tls]\nclient_cert_path = "/certs/client.pem"\nclient_key_path = "/certs/client.key"\nserver_ca_cert_path = "/certs/ca.pem"\nserver_name = "temporal.internal"\n`,
    );
    const fromProfile = resolveTemporalConnection({ env: { ...base, TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'prod' } });
    expect(fromProfile).toMatchObject({
      address: 'prod.example:7233',
      namespace: 'prod',
      tls: { clientCertPath: '/certs/client.pem', clientKeyPath: '/certs/client.key', serverCaCertPath: '/certs/ca.pem', serverName: 'temporal.internal' },
    });
    const overridden = resolveTemporalConnection({ configFile: toml, profile: 'prod', env: { ...base, TEMPORAL_NAMESPACE: 'other' }, explicit: { address: 'flag:7233' } });
    expect(overridden).toMatchObject({ address: 'flag:7233', namespace: 'other' });
    expect(resolveTemporalConnection({ env: base })).toEqual({ address: 'localhost:7233', namespace: 'default' });
  });

  it('an API key turns TLS on; certificate files that cannot be read are named', () => {
    const withKey = resolveTemporalConnection({ env: { ...base, TEMPORAL_API_KEY: 'k-123', TEMPORAL_ADDRESS: 'x.tmprl.cloud:7233' } });
    expect(connectionOptions(withKey)).toMatchObject({ address: 'x.tmprl.cloud:7233', apiKey: 'k-123', tls: true });
    expect(webUiBase(withKey, {})).toBe('https://cloud.temporal.io');
    const broken = resolveTemporalConnection({ env: { ...base, TEMPORAL_TLS_CLIENT_CERT_PATH: '/nope/c.pem', TEMPORAL_TLS_CLIENT_KEY_PATH: '/nope/c.key' } });
    expect(() => connectionOptions(broken)).toThrow('cannot read the client certificate /nope/c.pem');
    expect(() => resolveTemporalConnection({ env: { ...base, TEMPORAL_TLS_CLIENT_CERT_PATH: '/only/cert.pem' } })).toThrow('mTLS needs both a client certificate and its key');
  });

  it('the Web UI follows the address: dev server convention, FERRY_UI_URL over it', () => {
    expect(webUiBase({ address: '127.0.0.1:17233' }, {})).toBe('http://127.0.0.1:18233');
    expect(webUiBase({ address: 'temporal:7233' }, {})).toBe('http://temporal:8233');
    expect(webUiBase({ address: 'temporal:7233' }, { FERRY_UI_URL: 'https://ui.example/' })).toBe('https://ui.example');
  });
});
