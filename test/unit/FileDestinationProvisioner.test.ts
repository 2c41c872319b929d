import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileDestinationProvisioner } from '../../activities/provisioners/FileDestinationProvisioner.js';
import type { DataAddress } from '../../src/DataAddress.js';
import { ProvisionRejected, type ProvisionRequest } from '../../src/Provisioner.js';

let base: string;
let root: string;
let provisioner: FileDestinationProvisioner;

beforeEach(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'ferry-fdp-'));
  root = path.join(base, 'root');
  await mkdir(root);
  provisioner = new FileDestinationProvisioner({ root });
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

const file = (endpoint: string): DataAddress => ({
  endpointType: 'File',
  endpoint,
  endpointProperties: [{ name: 'fileName', value: 'out.bin' }],
});
const request = (address: DataAddress, flowId = 'flow-1'): ProvisionRequest => ({
  flowId,
  workflowId: `dataflow-c-${flowId}`,
  role: 'CONSUMER',
  side: 'destination',
  address,
  callbackUrl: 'http://127.0.0.1:1/unused',
});
const exists = (p: string) => stat(p).then(() => true, () => false);

describe('FileDestinationProvisioner', () => {
  it('applies to File destinations only', () => {
    expect(provisioner.name).toBe('file-destination');
    expect(provisioner.appliesTo('CONSUMER', 'destination', file('x'))).toBe(true);
    expect(provisioner.appliesTo('CONSUMER', 'source', file('x'))).toBe(false);
    expect(provisioner.appliesTo('PROVIDER', 'destination', { endpointType: 'HttpData', endpoint: 'http://x', endpointProperties: [] })).toBe(false);
  });

  it('creates the per-flow directory, idempotently, and rewrites the address', async () => {
    const first = await provisioner.provision(request(file('inbox')));
    const dir = path.join(root, 'inbox', 'flow-1');
    // the directory is made here, once: transfers must not make it again (createDirectory false)
    expect(first).toEqual({
      address: { ...file('inbox'), endpoint: dir, endpointProperties: [...file('inbox').endpointProperties, { name: 'createDirectory', value: 'false' }] },
      pending: false,
      resource: { path: dir },
    });
    expect((await stat(dir)).isDirectory()).toBe(true);
    // marked as this flow's: a push accepts a provisioned (createDirectory false) directory only with the marker
    expect(JSON.parse(await readFile(path.join(dir, '.ferry-flow'), 'utf8'))).toEqual({ flowId: 'flow-1' });
    expect(await provisioner.provision(request(file(path.join(root, 'inbox'))))).toEqual(first);
  });

  it('refuses a flow directory that exists and is not this flow\'s', async () => {
    await mkdir(path.join(root, 'inbox', 'flow-2'), { recursive: true });
    await writeFile(path.join(root, 'inbox', 'flow-2', 'report.csv'), 'tenant data');
    await expect(provisioner.provision(request(file('inbox'), 'flow-2'))).rejects.toBeInstanceOf(ProvisionRejected);
    await provisioner.provision(request(file('inbox'), 'flow-3'));
    await writeFile(path.join(root, 'inbox', 'flow-3', '.ferry-flow'), JSON.stringify({ flowId: 'flow-4' }));
    await expect(provisioner.provision(request(file('inbox'), 'flow-3'))).rejects.toBeInstanceOf(ProvisionRejected);
    expect(await readdir(path.join(root, 'inbox', 'flow-2'))).toEqual(['report.csv']);
  });

  it('rejects endpoints outside the root, bad flow ids and file components', async () => {
    await expect(provisioner.provision(request(file('../escape')))).rejects.toBeInstanceOf(ProvisionRejected);
    await expect(provisioner.provision(request(file('/etc')))).rejects.toBeInstanceOf(ProvisionRejected);
    await expect(provisioner.provision(request(file('inbox'), '../x'))).rejects.toBeInstanceOf(ProvisionRejected);
    await writeFile(path.join(root, 'afile'), 'x');
    await expect(provisioner.provision(request(file('afile')))).rejects.toBeInstanceOf(ProvisionRejected);
    expect(await exists(path.join(base, 'escape'))).toBe(false);
  });

  it('does not follow a symlink out of the root', async () => {
    const outside = path.join(base, 'outside');
    await mkdir(outside);
    await symlink(outside, path.join(root, 'link'));
    await expect(provisioner.provision(request(file('link')))).rejects.toBeInstanceOf(ProvisionRejected);
    await expect(provisioner.provision(request(file('link/deeper/still')))).rejects.toBeInstanceOf(ProvisionRejected);
    expect(await readdir(outside)).toEqual([]);
  });

  it.each(['completed', 'suspended'] as const)('keeps delivered data when %s, removing only .part files', async (reason) => {
    const { resource } = await provisioner.provision(request(file('inbox')));
    const dir = resource.path!;
    await writeFile(path.join(dir, 'out.bin'), 'data');
    await writeFile(path.join(dir, 'other.bin.part'), 'partial');
    const res = await provisioner.deprovision({ flowId: 'flow-1', side: 'destination', resource, reason, callbackUrl: '' });
    expect(res).toEqual({ pending: false });
    // the flow marker stays while a suspended flow may resume; a completed one leaves only its data
    expect((await readdir(dir)).sort()).toEqual(reason === 'completed' ? ['out.bin'] : ['.ferry-flow', 'out.bin']);
  });

  it.each(['terminated', 'failed'] as const)('removes the flow directory when %s, and again without error', async (reason) => {
    const { resource } = await provisioner.provision(request(file('inbox')));
    await writeFile(path.join(resource.path!, 'out.bin'), 'data');
    const req = { flowId: 'flow-1', side: 'destination' as const, resource, reason, callbackUrl: '' };
    expect(await provisioner.deprovision(req)).toEqual({ pending: false });
    expect(await exists(resource.path!)).toBe(false);
    expect(await exists(path.join(root, 'inbox'))).toBe(true);
    expect(await provisioner.deprovision(req)).toEqual({ pending: false });
    expect(await provisioner.deprovision({ ...req, reason: 'completed' })).toEqual({ pending: false });
  });

  it('never removes the root or anything outside it', async () => {
    const outside = path.join(base, 'outside');
    await mkdir(outside);
    await writeFile(path.join(outside, 'keep'), 'x');
    await mkdir(path.join(outside, 'sub'));
    await symlink(outside, path.join(root, 'link'));
    const release = (p: string) =>
      provisioner.deprovision({ flowId: 'f', side: 'destination', resource: { path: p }, reason: 'terminated', callbackUrl: '' });
    await expect(release(outside)).rejects.toBeInstanceOf(ProvisionRejected);
    await expect(release(root)).rejects.toBeInstanceOf(ProvisionRejected);
    await expect(release(path.join(root, '..', 'outside'))).rejects.toBeInstanceOf(ProvisionRejected);
    await expect(release(path.join(root, 'link', 'sub'))).rejects.toBeInstanceOf(ProvisionRejected);
    await expect(
      provisioner.deprovision({ flowId: 'f', side: 'destination', resource: {}, reason: 'failed', callbackUrl: '' }),
    ).rejects.toBeInstanceOf(ProvisionRejected);
    expect((await readdir(outside)).sort()).toEqual(['keep', 'sub']);
    expect(await exists(root)).toBe(true);
  });
});
