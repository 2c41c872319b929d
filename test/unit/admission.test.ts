import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Client, Connection } from '@temporalio/client';
import { createControlPlaneActivities } from '../../activities/controlPlane.js';
import { admitTransferRequest, type AdmissionPolicy, type AdmissionRequest } from '../../src/admission.js';
import { ControlPlaneConfigSchema } from '../../src/config.js';
import type { DataAddress } from '../../src/DataAddress.js';
import { fuzzParams } from '../fuzz/params.js';

const file = (endpoint: string): DataAddress => ({ endpointType: 'File', endpoint, endpointProperties: [] });
const http = (endpoint: string): DataAddress => ({ endpointType: 'HttpData', endpoint, endpointProperties: [] });

const policy: AdmissionPolicy = {
  agreements: {
    'ag-file': { assetId: 'big', counterparty: 'consumer' },
    'ag-held': { assetId: 'big', counterparty: 'consumer', start: 'manual' },
    'ag-other': { assetId: 'report', counterparty: 'tenant-y' },
  },
  assets: {
    big: file('/srv/files/assets/big.bin'),
    report: file('tenants/y/report.csv'),
  },
  dataPlanes: [{ id: 'dp', transferTypes: ['File-PUSH', 'HttpData-PULL'] }],
};
const request = (extra: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
  counterpartyId: 'consumer',
  agreementId: 'ag-file',
  format: 'File-PUSH',
  dataAddress: file('inbox/consumer'),
  ...extra,
});

describe('admitTransferRequest', () => {
  it('admits a request under an agreement with the caller, and says how it starts', () => {
    expect(admitTransferRequest(policy, request())).toEqual({ admitted: true, assetId: 'big', transferType: 'File-PUSH', startPolicy: 'automatic' });
    expect(admitTransferRequest(policy, request({ agreementId: 'ag-held', assetId: 'big' }))).toMatchObject({ admitted: true, startPolicy: 'manual' });
    expect(admitTransferRequest(policy, request({ format: 'HttpData-PULL', dataAddress: undefined }))).toMatchObject({ admitted: true, transferType: 'HttpData-PULL' });
  });

  it.each([
    ['an unknown agreement', request({ agreementId: 'nobody-made-this' }), 'UnknownAgreement'],
    ["another counterparty's agreement", request({ agreementId: 'ag-other', dataAddress: file('inbox/x') }), 'UnknownAgreement'],
    ['a prototype key as agreement id', request({ agreementId: '__proto__' }), 'UnknownAgreement'],
    ['an asset the agreement does not cover', request({ assetId: 'report' }), 'UnknownAgreement'],
    ['an unknown format', request({ format: 'S3-PUSH' }), 'UnsupportedFormat'],
    ['a format no data plane serves', request({ format: 'HttpData-PUSH', dataAddress: http('https://c.example/in') }), 'UnsupportedFormat'],
    ['File-PUSH to an HttpData address (defect 2)', request({ dataAddress: http('http://10.0.0.1/admin') }), 'InvalidDataAddress'],
    ['File-PUSH without an address', request({ dataAddress: undefined }), 'InvalidDataAddress'],
    ['a pull with an address', request({ format: 'HttpData-PULL', dataAddress: http('https://c.example/in') }), 'InvalidDataAddress'],
    ['a File path with ..', request({ dataAddress: file('inbox/../x') }), 'InvalidDataAddress'],
    ['a File path that leaves the root', request({ dataAddress: file('inbox/../../x') }), 'InvalidDataAddress'],
    ['an absolute File path with ..', request({ dataAddress: file('/srv/files/inbox/../assets') }), 'InvalidDataAddress'],
    ['a drive-relative Windows path', request({ dataAddress: file('C:assets') }), 'InvalidDataAddress'],
    ["an absolute path in the asset's directory", request({ dataAddress: file('/srv/files/assets') }), 'InvalidDataAddress'],
    ["an absolute path containing a relative asset's directory", request({ dataAddress: file('/data/root/tenants/y/inbox') }), 'InvalidDataAddress'],
    ["the asset's directory (defect 1)", request({ dataAddress: file('assets') }), 'InvalidDataAddress'],
    ["below the asset's directory", request({ dataAddress: file('files/assets/x') }), 'InvalidDataAddress'],
    ["a relative asset's directory", request({ dataAddress: file('./tenants//y') }), 'InvalidDataAddress'],
    ['the same through backslashes', request({ dataAddress: file('tenants\\y') }), 'InvalidDataAddress'],
  ])('refuses %s', (_what, req, code) => {
    expect(admitTransferRequest(policy, req)).toMatchObject({ admitted: false, code });
  });

  it("admits absolute destinations (what a consumer's provisioner hands out) outside asset directories", () => {
    expect(admitTransferRequest(policy, request({ dataAddress: file('/srv/files/consumer/inbox/flow-1') }))).toMatchObject({ admitted: true });
    expect(admitTransferRequest(policy, request({ dataAddress: file('/srv/files/assets-2') }))).toMatchObject({ admitted: true });
  });

  it('HttpData-PUSH needs an http(s) URL without credentials', () => {
    const p = { ...policy, dataPlanes: [{ id: 'dp', transferTypes: ['HttpData-PUSH'] }] };
    const push = (endpoint: string) => admitTransferRequest(p, request({ format: 'HttpData-PUSH', dataAddress: http(endpoint) }));
    expect(push('https://c.example/in')).toMatchObject({ admitted: true });
    expect(push('https://user:pw@c.example/in')).toMatchObject({ admitted: false, code: 'InvalidDataAddress' });
    expect(push('file:///etc/passwd')).toMatchObject({ admitted: false, code: 'InvalidDataAddress' });
    expect(admitTransferRequest(p, request({ format: 'HttpData-PUSH', dataAddress: file('inbox') }))).toMatchObject({ admitted: false, code: 'InvalidDataAddress' });
  });

  it('refusal reasons name nothing of the provider (no asset paths)', () => {
    const refused = admitTransferRequest(policy, request({ dataAddress: file('assets') }));
    expect(JSON.stringify(refused)).not.toMatch(/srv|big\.bin/);
  });
});

describe('admitTransferRequest, properties', () => {
  const anyAddress = fc.oneof(
    fc.constant(undefined),
    fc.record({
      endpointType: fc.constantFrom('File', 'HttpData', 'https://w3id.org/idsa/v4.1/HTTP') as fc.Arbitrary<DataAddress['endpointType']>,
      endpoint: fc.oneof(fc.string(), fc.constantFrom('assets', '../x', '/abs', 'inbox', 'http://127.0.0.1/', 'https://c.example/in', 'files/assets/y')),
      endpointProperties: fc.constant([] as DataAddress['endpointProperties']),
    }),
  );
  const anyRequest = fc.record({
    counterpartyId: fc.constantFrom('consumer', 'tenant-y', 'stranger'),
    agreementId: fc.oneof(fc.constantFrom('ag-file', 'ag-held', 'ag-other', 'constructor', 'toString'), fc.string()),
    assetId: fc.option(fc.constantFrom('big', 'report', 'nope'), { nil: undefined }),
    format: fc.oneof(fc.constantFrom('File-PUSH', 'HttpData-PUSH', 'HttpData-PULL'), fc.string()),
    dataAddress: anyAddress,
  });

  it('admits only what each rule allows, and never throws', () => {
    fc.assert(
      fc.property(anyRequest, (req) => {
        const result = admitTransferRequest(policy, req);
        if (!result.admitted) return;
        const agreement = policy.agreements[req.agreementId]!;
        expect(agreement.counterparty).toBe(req.counterpartyId);
        expect(result.assetId).toBe(agreement.assetId);
        expect(policy.dataPlanes.some((d) => d.transferTypes.includes(req.format))).toBe(true);
        if (req.format.endsWith('-PULL')) expect(req.dataAddress).toBeUndefined();
        else {
          expect(req.dataAddress?.endpointType).toBe(req.format.split('-')[0]);
          expect(req.dataAddress!.endpoint.split(/[\\/]/)).not.toContain('assets');
          expect(req.dataAddress!.endpoint.split(/[\\/]/)).not.toContain('..');
        }
      }),
      fuzzParams(),
    );
  });
});

describe('the admitTransferRequest activity uses the worker config', () => {
  const config = ControlPlaneConfigSchema.parse({
    connectorId: 'provider',
    dataPlanes: [{ id: 'dp', transferTypes: ['File-PUSH'] }],
    assets: { a: file('provider/assets/a.bin') },
    // the old place still works, merged with the new one
    agreements: { 'ag-new': { assetId: 'a', counterparty: 'consumer' } },
    dsp: {
      agreements: { 'ag-old': { assetId: 'a', counterparty: 'partner' } },
      counterparties: [{ id: 'partner', address: 'https://partner.example/dsp', inboundToken: 'x'.repeat(16), outboundToken: 'y'.repeat(16) }],
    },
  });
  // a client of nothing: no data plane is ever found live (openTransfer then picks among all)
  const acts = createControlPlaneActivities({ config, client: new Client({ connection: Connection.lazy({ address: '127.0.0.1:1', connectTimeout: '1s' }) }), transports: [] });
  const admit = (req: Parameters<typeof acts.admitTransferRequest>[0]) => new MockActivityEnvironment().run(acts.admitTransferRequest, req);
  const input = { agreementId: 'ag-new', assetId: 'a', transferType: 'File-PUSH' as const, dataDestination: file('inbox') };

  it('in-cluster: the consumer connector is the counterparty (from counterpartyId, else its temporal:// address)', async () => {
    expect(await admit({ ...input, counterpartyAddress: 'temporal://consumer' })).toMatchObject({ admitted: true });
    expect(await admit({ ...input, counterpartyAddress: 'temporal://consumer', counterpartyId: 'consumer' })).toMatchObject({ admitted: true });
    expect(await admit({ ...input, counterpartyAddress: 'temporal://intruder' })).toMatchObject({ admitted: false, code: 'UnknownAgreement' });
    expect(await admit({ ...input, agreementId: 'made-up', counterpartyAddress: 'temporal://consumer' })).toMatchObject({ admitted: false, code: 'UnknownAgreement' });
  });

  it('DSP: counterpartyId decides; without it, the configured counterparty owning the address', async () => {
    const dsp = { ...input, agreementId: 'ag-old', counterpartyAddress: 'https://partner.example/dsp/cb' };
    expect(await admit({ ...dsp, counterpartyId: 'partner' })).toMatchObject({ admitted: true });
    expect(await admit(dsp)).toMatchObject({ admitted: true });
    expect(await admit({ ...dsp, counterpartyId: 'consumer' })).toMatchObject({ admitted: false });
    expect(await admit({ ...dsp, counterpartyAddress: 'https://elsewhere.example/dsp' })).toMatchObject({ admitted: false });
  });

  it('openTransfer admits every provider process (so in-cluster requests are admitted by the provider worker)', async () => {
    const open = (req: Parameters<typeof acts.openTransfer>[0]) => new MockActivityEnvironment().run(acts.openTransfer, req);
    const provider = { role: 'PROVIDER' as const, processId: 'p-1', transferType: 'File-PUSH', agreementId: 'ag-new', assetId: 'a', dataDestination: file('inbox') };
    expect(await open({ ...provider, counterpartyId: 'consumer' })).not.toHaveProperty('refusal');
    expect(await open({ ...provider, counterpartyId: 'intruder' })).toMatchObject({ refusalCode: 'UnknownAgreement' });
    expect(await open({ ...provider, counterpartyId: 'consumer', dataDestination: { endpointType: 'HttpData', endpoint: 'http://10.0.0.1/', endpointProperties: [] } })).toMatchObject({ refusalCode: 'InvalidDataAddress' });
    expect(await open({ ...provider })).toMatchObject({ refusalCode: 'UnknownAgreement' });
    // a consumer's process is not admitted (it asks; the provider admits)
    expect(await open({ ...provider, role: 'CONSUMER', agreementId: 'anything' })).not.toHaveProperty('refusal');
  });
});
