import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, ControlPlaneConfigSchema, DataPlaneConfigSchema, parseConfig } from '../../src/config.js';
import { durationMs } from '../../src/settings.js';
import { fuzzParams } from './params.js';

/**
 * Worker configuration, fuzzed: any JSON either parses or fails with one ConfigError (never
 * another exception); an unknown key anywhere is an error (a typo never silently runs on a
 * default); every duration is refused outside its setting's range.
 */
const KEY = 'x'.repeat(16);
const control = () => ({
  connectorId: 'provider',
  temporal: { address: 'localhost:7233', namespace: 'default' },
  dataPlanes: [{ id: 'dp', transferTypes: ['File-PUSH'] }],
  assets: { a: { endpointType: 'File', endpoint: '/srv/a.bin' } },
  agreements: { 'ag-1': { assetId: 'a', counterparty: 'consumer' } },
  transfer: { requestedTimeout: '5m', staleRetries: 3 },
  dsp: {
    host: '127.0.0.1',
    port: 0,
    counterparties: [{ id: 'consumer', address: 'https://c.example/dsp', inboundToken: KEY, outboundToken: KEY }],
    limits: { maxRequests: 10, window: '1m' },
  },
});
const data = () => ({
  instanceId: 'dp',
  temporal: { address: 'localhost:7233', namespace: 'default' },
  fileRoot: '/srv',
  callback: { host: '127.0.0.1', port: 0 },
  provisioners: [{ kind: 'http', name: 'svc', url: 'https://svc.example', side: 'destination', endpointTypes: ['File'] }],
  publicApi: { host: '127.0.0.1', port: 0, tokenTtl: '10m' },
  allowedNetworks: ['10.0.0.0/8'],
  dataFlow: { provisionTimeout: '10m' },
});

/** Every path to an object inside a config (where an unknown key can hide). */
function objectPaths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(value)) return value.flatMap((v, i) => objectPaths(v, [...at, i]));
  if (value && typeof value === 'object') {
    const own = at.length >= 1 && ['assets', 'agreements'].includes(String(at.at(-1))) ? [] : [at]; // records take any key
    return [...own, ...Object.entries(value).flatMap(([k, v]) => objectPaths(v, [...at, k]))];
  }
  return [];
}
function at(obj: unknown, p: (string | number)[]): Record<string, unknown> {
  return p.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], obj) as Record<string, unknown>;
}

describe('worker config, fuzzed', () => {
  it('the reference configs are valid (so the refusals below mean something)', () => {
    expect(() => parseConfig(ControlPlaneConfigSchema, control(), 'cp')).not.toThrow();
    expect(() => parseConfig(DataPlaneConfigSchema, data(), 'dp')).not.toThrow();
  });

  it('an unknown key in any object of either config is refused, naming it', () => {
    const configs = { control: { make: control, schema: ControlPlaneConfigSchema }, data: { make: data, schema: DataPlaneConfigSchema } };
    const typo = fc.oneof(fc.constantFrom('requestedTimout', 'staleRetry', 'allowedHttpDestination', 'agreement', 'limit', 'adress', '__typo'), fc.stringMatching(/^[a-z][A-Za-z]{2,12}$/));
    fc.assert(
      fc.property(fc.constantFrom('control' as const, 'data' as const), fc.nat(), typo, (which, pick, key) => {
        const { make, schema } = configs[which];
        const config = make();
        const paths = objectPaths(config);
        const target = at(config, paths[pick % paths.length]!);
        if (key in target) return; // not unknown
        target[key] = 1;
        let error: unknown;
        try {
          parseConfig(schema as never, config, 'config');
        } catch (e) {
          error = e;
        }
        if (error === undefined) {
          // only a key that happens to be a real field of that object may pass
          throw new Error(`unknown key ${key} at ${JSON.stringify(paths[pick % paths.length])} was accepted`);
        }
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as Error).message).toContain(key);
      }),
      fuzzParams(300),
    );
  });

  it('durations out of each setting’s range, or malformed, are refused; in range they parse', () => {
    const settings = {
      requestedTimeout: ['1s', '7d'],
      retryInitialInterval: ['100ms', '1h'],
      counterpartyTimeout: ['1s', '90d'],
      suspendedTimeout: ['1s', '366d'],
    } as const;
    const anyDuration = fc.oneof(
      fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 16n }), fc.constantFrom('ms', 's', 'm', 'h', 'd')).map(([n, u]) => `${n}${u}`),
      fc.constantFrom('0s', '0', '999999999999d', '-1s', '1.5s', '1 s', '1S', '1w', '', 'soon', 'Infinity', '1e3ms'),
      fc.oneof(fc.integer(), fc.double(), fc.constant(Number.MAX_SAFE_INTEGER)),
    );
    fc.assert(
      fc.property(fc.constantFrom(...(Object.keys(settings) as (keyof typeof settings)[])), anyDuration, (setting, value) => {
        const config = { ...control(), transfer: { [setting]: value } };
        const result = ControlPlaneConfigSchema.safeParse(config);
        const [lo, hi] = settings[setting].map(durationMs) as [number, number];
        let ms: number | undefined;
        if (typeof value === 'number') ms = Number.isInteger(value) ? value : undefined;
        else if (/^\d{1,15}(ms|s|m|h|d)$/.test(value)) ms = durationMs(value);
        const inRange = ms !== undefined && ms >= lo && ms <= hi;
        expect(result.success, `${setting}=${String(value)}`).toBe(inRange);
      }),
      fuzzParams(500),
    );
  });

  it('any JSON parses or fails with one ConfigError, never anything else', () => {
    const mutated = fc.tuple(fc.constantFrom('control', 'data'), fc.nat(), fc.jsonValue({ maxDepth: 3 })).map(([which, pick, value]) => {
      const config = which === 'data' ? data() : control();
      const paths = objectPaths(config).filter((p) => p.length > 0);
      const p = paths[pick % paths.length]!;
      const parent = at(config, p.slice(0, -1));
      parent[p.at(-1)!] = value;
      return { config, data: which === 'data' };
    });
    fc.assert(
      fc.property(fc.oneof(mutated, fc.jsonValue().map((config) => ({ config, data: false }))), ({ config, data: isData }) => {
        try {
          parseConfig(isData ? DataPlaneConfigSchema : (ControlPlaneConfigSchema as never), config, 'config');
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
        }
      }),
      fuzzParams(300),
    );
  });

  it('a counterparty address too long for a search attribute, credentials in URLs, bad CIDRs: refused', () => {
    const long = { ...control(), dsp: { ...control().dsp, counterparties: [{ id: 'c', address: `https://c.example/${'x'.repeat(2048)}`, inboundToken: KEY, outboundToken: KEY }] } };
    expect(() => parseConfig(ControlPlaneConfigSchema, long, 'cp')).toThrow(ConfigError);
    const creds = { ...control(), dsp: { ...control().dsp, counterparties: [{ id: 'c', address: 'https://u:p@c.example/dsp', inboundToken: KEY, outboundToken: KEY }] } };
    expect(() => parseConfig(ControlPlaneConfigSchema, creds, 'cp')).toThrow(/user:password/);
    expect(() => parseConfig(DataPlaneConfigSchema, { ...data(), allowedNetworks: ['10.0.0.0/33'] }, 'dp')).toThrow(/CIDR/);
    expect(() => parseConfig(DataPlaneConfigSchema, { ...data(), allowedHttpDestinations: ['https://u:p@x.example/in'] }, 'dp')).toThrow(ConfigError);
    const shared = { ...control(), dsp: { ...control().dsp, counterparties: [...control().dsp.counterparties, { id: 'd', address: 'https://d.example', inboundToken: KEY, outboundToken: KEY }] } };
    expect(() => parseConfig(ControlPlaneConfigSchema, shared, 'cp')).toThrow(/share an inboundToken/);
    expect(() => parseConfig(ControlPlaneConfigSchema, { ...control(), agreements: { x: { assetId: 'missing', counterparty: 'c' } } }, 'cp')).toThrow(/not in assets/);
  });

  it('agreements: the new place and the old dsp.agreements are merged; the same id saying two things is refused', () => {
    const both = { ...control(), dsp: { ...control().dsp, agreements: { 'ag-old': { assetId: 'a', counterparty: 'consumer' } } } };
    expect(Object.keys(parseConfig(ControlPlaneConfigSchema, both, 'cp').agreements).sort()).toEqual(['ag-1', 'ag-old']);
    const clash = { ...control(), dsp: { ...control().dsp, agreements: { 'ag-1': { assetId: 'a', counterparty: 'someone-else' } } } };
    expect(() => parseConfig(ControlPlaneConfigSchema, clash, 'cp')).toThrow(/differs/);
  });
});
