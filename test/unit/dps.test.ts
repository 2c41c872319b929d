import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClientAuthInvalid, didWebUrl } from '../../activities/dps/tokenRenewal.js';
import { HTTP_EDR_ENDPOINT_TYPE, type DataAddress } from '../../src/DataAddress.js';
import { DATA_FLOW_TRANSITIONS, type DataFlowState } from '../../src/DataFlowState.js';
import {
  DataFlowPrepareWireSchema,
  DataFlowStatusWireSchema,
  dataFlowStateOfDps,
  DPS_HTTP_PULL,
  DPS_HTTP_PUSH,
  DPS_STATES,
  dpsStateOf,
  DpsMessageError,
  fromWireAddress,
  profileOfTransferType,
  toWireAddress,
  transferTypeOfProfile,
} from '../../src/dps.js';
import { TRANSFER_TYPES } from '../../src/TransferProcess.js';

const states = Object.keys(DATA_FLOW_TRANSITIONS) as DataFlowState[];
const property = fc.record({ name: fc.string({ minLength: 1, maxLength: 12 }).filter((n) => !['authType', 'expiresIn', 'expiresAt'].includes(n)), value: fc.string({ maxLength: 20 }) });

describe('DPS profiles', () => {
  it('maps every ferry transfer type to a profile and back', () => {
    for (const t of TRANSFER_TYPES) expect(transferTypeOfProfile(profileOfTransferType(t))).toBe(t);
  });
  it('takes the HTTP profile by URL and by short name (the TCK 1.2.0 sends both), and nothing else', () => {
    expect(transferTypeOfProfile(DPS_HTTP_PULL)).toBe('HttpData-PULL');
    expect(transferTypeOfProfile('http-push')).toBe('HttpData-PUSH');
    const known: string[] = [DPS_HTTP_PULL, DPS_HTTP_PUSH, 'http-pull', 'http-push', ...TRANSFER_TYPES];
    fc.assert(
      fc.property(fc.string().filter((p) => !known.includes(p)), (p) => {
        expect(transferTypeOfProfile(p)).toBeUndefined();
      }),
    );
  });
});

describe('DPS data addresses', () => {
  it('a ferry address survives the wire both ways (type, endpoint, properties)', () => {
    fc.assert(
      fc.property(fc.constantFrom<DataAddress['endpointType']>('File', 'HttpData', HTTP_EDR_ENDPOINT_TYPE), fc.webUrl(), fc.array(property, { maxLength: 4 }), fc.constantFrom(...TRANSFER_TYPES), (type, endpoint, props, transferType) => {
        const address: DataAddress = { endpointType: type, endpoint, endpointProperties: props };
        const wire = toWireAddress(address, transferType);
        const back = fromWireAddress({ ...wire, endpointProperties: wire.endpointProperties ?? [] }, type === 'HttpData' ? 'push' : 'pull');
        expect(back.endpoint).toBe(endpoint);
        expect(back.endpointType).toBe(type);
        for (const p of props) expect(back.endpointProperties).toContainEqual(p);
      }),
    );
  });
  it('names HTTP addresses by the DPS HTTP profile, with authType and expiresIn', () => {
    const edr: DataAddress = {
      endpointType: HTTP_EDR_ENDPOINT_TYPE,
      endpoint: 'https://dp.example/public',
      endpointProperties: [
        { name: 'authorization', value: 'tok' },
        { name: 'expiresAt', value: new Date(1_000_000 + 300_000).toISOString() },
      ],
    };
    const wire = toWireAddress(edr, 'HttpData-PULL', 1_000_000);
    expect(wire.endpointType).toBe(DPS_HTTP_PULL);
    expect(wire.endpointProperties).toContainEqual({ '@type': 'EndpointProperty', name: 'authType', value: 'bearer' });
    expect(wire.endpointProperties).toContainEqual({ '@type': 'EndpointProperty', name: 'expiresIn', value: '300' });
    expect(toWireAddress({ endpointType: 'HttpData', endpoint: 'https://c.example/in', endpointProperties: [] }, 'HttpData-PUSH').endpointType).toBe(DPS_HTTP_PUSH);
  });
  it('the IDSA HTTP type is where to push in a push, and an EDR in a pull', () => {
    const wire = { endpointType: HTTP_EDR_ENDPOINT_TYPE, endpoint: 'http://x', endpointProperties: [] };
    expect(fromWireAddress(wire, 'push').endpointType).toBe('HttpData');
    expect(fromWireAddress(wire, 'pull').endpointType).toBe(HTTP_EDR_ENDPOINT_TYPE);
  });
  it('refuses endpoint types ferry does not know', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }).filter((t) => !['File', 'HttpData', HTTP_EDR_ENDPOINT_TYPE, DPS_HTTP_PULL, DPS_HTTP_PUSH].includes(t)), (t) => {
        expect(() => fromWireAddress({ endpointType: t, endpoint: 'x', endpointProperties: [] }, 'push')).toThrow(DpsMessageError);
      }),
    );
  });
});

describe('DPS states', () => {
  it('every DataFlow state of every history maps to a DPS state', () => {
    fc.assert(
      fc.property(fc.constantFrom<'CONSUMER' | 'PROVIDER'>('CONSUMER', 'PROVIDER'), fc.array(fc.constantFrom(...states), { maxLength: 8 }), fc.constantFrom(...states), (role, past, state) => {
        expect(DPS_STATES).toContain(dpsStateOf({ role, state, history: [...past, state].map((s) => ({ state: s })) }));
      }),
    );
  });
  it('provisioning before a consumer ever started is PREPARING; a suspension being released is still SUSPENDED', () => {
    expect(dpsStateOf({ role: 'CONSUMER', state: 'PROVISIONING', history: [{ state: 'RECEIVED' }, { state: 'PROVISIONING' }] })).toBe('PREPARING');
    expect(dpsStateOf({ role: 'PROVIDER', state: 'PROVISIONING', history: [{ state: 'RECEIVED' }, { state: 'PROVISIONING' }] })).toBe('STARTING');
    expect(dpsStateOf({ role: 'PROVIDER', state: 'DEPROVISIONING', history: [{ state: 'STARTED' }, { state: 'SUSPENDED' }, { state: 'DEPROVISIONING' }] })).toBe('SUSPENDED');
    expect(dpsStateOf({ role: 'PROVIDER', state: 'FAILED', history: [{ state: 'FAILED' }] })).toBe('TERMINATED');
  });
  it('every DPS state maps back to a DataFlow state', () => {
    for (const s of DPS_STATES) expect(states).toContain(dataFlowStateOfDps(s));
  });
});

describe('DPS messages', () => {
  const prepare = { processId: 'p-1', agreementId: 'a', datasetId: 'd', profile: DPS_HTTP_PUSH };
  it('accepts RC2 names and a missing messageId; needs a profile', () => {
    expect(DataFlowPrepareWireSchema.safeParse(prepare).success).toBe(true);
    expect(DataFlowPrepareWireSchema.safeParse({ ...prepare, profile: undefined, transferType: 'HttpData-PUSH', callbackAddress: 'https://cp.example/cb' }).success).toBe(true);
    expect(DataFlowPrepareWireSchema.safeParse({ ...prepare, profile: undefined }).success).toBe(false);
    expect(DataFlowStatusWireSchema.safeParse({ state: 'PREPARED' }).success).toBe(true);
  });
  it('refuses process ids that could leave their place in a workflow id', () => {
    for (const processId of ['../x', 'a/b', '', ' x', 'x'.repeat(200)]) expect(DataFlowPrepareWireSchema.safeParse({ ...prepare, processId }).success).toBe(false);
  });
});

describe('did:web', () => {
  it('resolves as the spec says, with %3A for a port', () => {
    expect(didWebUrl('did:web:example.com')).toBe('https://example.com/.well-known/did.json');
    expect(didWebUrl('did:web:localhost%3A8083', { allowHttp: true })).toBe('http://localhost:8083/.well-known/did.json');
    expect(didWebUrl('did:web:example.com:user:alice')).toBe('https://example.com/user/alice/did.json');
  });
  it('never yields a URL on another host than the DID names', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (tail) => {
        let url: string;
        try {
          url = didWebUrl(`did:web:example.com${tail}`);
        } catch (e) {
          expect(e).toBeInstanceOf(ClientAuthInvalid);
          return;
        }
        expect(new URL(url).hostname).toMatch(/^example\.com/);
      }),
    );
    for (const evil of ['did:web:evil.com%2F@good.com', 'did:web:good.com%40evil.com', 'did:key:abc', 'did:web:']) expect(() => didWebUrl(evil)).toThrow(ClientAuthInvalid);
  });
});
