import { createHash, randomBytes } from 'node:crypto';
import { link, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AttemptSuperseded, TransferAborted, TransferRejected, commonPrefix, copyFile, type FileProgress } from '../../activities/transfer/FileTransfer.js';
import type { DataAddress } from '../../src/DataAddress.js';

const MiB = 1024 * 1024;
let base: string;
let root: string;
let content: Buffer;
let digest: string;

beforeEach(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'ferry-copy-'));
  root = path.join(base, 'root');
  await mkdir(path.join(root, 'src'), { recursive: true });
  await mkdir(path.join(root, 'out'));
  content = randomBytes(9 * MiB + 12345);
  digest = createHash('sha256').update(content).digest('hex');
  await writeFile(path.join(root, 'src', 'data.bin'), content);
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

const addr = (endpoint: string, props: Record<string, string> = {}): DataAddress => ({
  endpointType: 'File',
  endpoint,
  endpointProperties: Object.entries(props).map(([name, value]) => ({ name, value })),
});
const source = () => addr('src/data.bin');
const exists = (p: string) => lstat(p).then(() => true, () => false);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A directory as the file-destination provisioner leaves it: made for a flow, marked. */
const provisionedDir = async (rel: string, flowId = 'consumer-flow') => {
  await mkdir(path.join(root, rel), { recursive: true });
  await writeFile(path.join(root, rel, '.ferry-flow'), JSON.stringify({ flowId }));
  return addr(rel, { createDirectory: 'false' });
};
const copy = (opts: Partial<Parameters<typeof copyFile>[0]> = {}) =>
  copyFile({ root, flowId: 'flow-1', source: source(), destination: addr('out'), ...opts });

describe('copyFile', () => {
  it('delivers into the flow directory it makes, hashing while copying', async () => {
    const progress: FileProgress[] = [];
    const result = await copy({ attempt: 'a-1', onProgress: (p) => progress.push(p) });
    const file = path.join(root, 'out', 'flow-1', 'data.bin');
    expect(result).toEqual({ bytes: content.length, sha256: digest, file, resumedFrom: 0, alreadyDelivered: false });
    expect((await readFile(file)).equals(content)).toBe(true);
    // the flow's marker and its delivery record; no .part is left
    expect((await readdir(path.dirname(file))).sort()).toEqual(['.ferry-done', '.ferry-flow', 'data.bin']);
    expect(JSON.parse(await readFile(path.join(root, 'out', 'flow-1', '.ferry-flow'), 'utf8'))).toEqual({ flowId: 'flow-1' });
    expect(JSON.parse(await readFile(path.join(root, 'out', 'flow-1', '.ferry-done'), 'utf8'))).toMatchObject({ flowId: 'flow-1', file: 'data.bin', bytes: content.length, sha256: digest, tag: 'a-1' });
    const copying = progress.filter((p) => p.phase === 'copying').map((p) => p.offset);
    expect(copying[0]).toBe(0);
    expect(copying.every((o, i) => i === 0 || o > copying[i - 1]!)).toBe(true);
    expect(progress.at(-1)).toEqual({ offset: content.length, part: 'a-1', phase: 'done' });
    expect(progress.map((p) => p.phase)).toContain('syncing');
  });

  it('delivers into a provisioned directory (createDirectory false, marked) as it is; one that is gone was released', async () => {
    const provisioned = await provisionedDir('inbox/flow-c');
    expect((await copy({ destination: provisioned })).file).toBe(path.join(root, 'inbox', 'flow-c', 'data.bin'));
    await rm(path.join(root, 'inbox', 'flow-c'), { recursive: true });
    await expect(copy({ destination: provisioned })).rejects.toThrow(new TransferRejected('destination "inbox/flow-c" is gone (released)'));
    expect(await exists(path.join(root, 'inbox', 'flow-c'))).toBe(false);
  });

  it('makes no directory but the flow\'s own: a destination that does not exist (released meanwhile) is refused', async () => {
    await expect(copy({ destination: addr('inbox/new') })).rejects.toThrow(new TransferRejected('destination "inbox/new" does not exist'));
    expect(await exists(path.join(root, 'inbox'))).toBe(false);
  });

  it('uses the destination fileName and copies empty files', async () => {
    const r = await copy({ destination: addr(path.join(root, 'out'), { fileName: 'renamed.bin' }) });
    expect(r.file).toBe(path.join(root, 'out', 'flow-1', 'renamed.bin'));
    await writeFile(path.join(root, 'src', 'empty'), '');
    const e = await copy({ flowId: 'flow-2', source: addr('src/empty') });
    expect(e).toMatchObject({ bytes: 0, sha256: sha(Buffer.alloc(0)) });
  });

  it('resumes the previous attempt\'s part from the longest prefix that matches the source', async () => {
    const dir = path.join(root, 'out', 'flow-1');
    await mkdir(dir);
    await writeFile(path.join(dir, '.ferry-flow'), JSON.stringify({ flowId: 'flow-1' }));
    const offset = 5 * MiB + 17;
    // more than the offset, with garbage past it: the copy must cut it off
    await writeFile(path.join(dir, 'data.bin.a-1.part'), Buffer.concat([content.subarray(0, offset), Buffer.from([content[offset]! ^ 0xff]), randomBytes(1000)]));
    const progress: FileProgress[] = [];
    const r = await copy({ attempt: 'a-2', resume: { part: 'a-1' }, onProgress: (p) => progress.push(p) });
    expect(r).toMatchObject({ sha256: digest, bytes: content.length, resumedFrom: offset });
    // resumed, not restarted: the copy began at the offset
    expect(progress.find((p) => p.phase === 'copying')!.offset).toBe(offset);
    expect((await readFile(r.file)).equals(content)).toBe(true);
    expect((await readdir(dir)).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('without a hint (a run after a suspension) takes the largest part; a damaged or foreign one keeps only what matches', async () => {
    const dir = path.join(root, 'out', 'flow-1');
    await mkdir(dir);
    await writeFile(path.join(dir, '.ferry-flow'), JSON.stringify({ flowId: 'flow-1' }));
    const damaged = Buffer.from(content.subarray(0, 3 * MiB));
    damaged[12345] = damaged[12345]! ^ 0xff;
    await writeFile(path.join(dir, 'data.bin.old-1.part'), damaged);
    await writeFile(path.join(dir, 'data.bin.old-2.part'), content.subarray(0, 100));
    const r = await copy({ attempt: 'new-1' });
    expect(r).toMatchObject({ sha256: digest, resumedFrom: 12345 });
    expect((await readFile(r.file)).equals(content)).toBe(true);
    expect(await readdir(dir)).not.toContainEqual(expect.stringMatching(/\.part$/));
  });

  it('aborts promptly on the signal, leaving the part for the next attempt', async () => {
    const ac = new AbortController();
    let reported = 0;
    const err = await copy({
      attempt: 'a-1',
      rateLimitBytesPerSec: 256 * 1024, // 36 s for the whole file: the abort must cut it short
      signal: ac.signal,
      onProgress: (p) => {
        reported = p.offset;
        if (p.phase === 'copying' && p.offset >= 256 * 1024) ac.abort(new Error('suspended'));
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransferAborted);
    expect((err as Error).name).toBe('AbortError');
    const part = path.join(root, 'out', 'flow-1', 'data.bin.a-1.part');
    expect((await stat(part)).size).toBeGreaterThanOrEqual(reported);
    expect((await stat(part)).size).toBeLessThan(content.length);
    expect(await exists(path.join(root, 'out', 'flow-1', 'data.bin'))).toBe(false);

    const resumed = await copy({ attempt: 'a-2', resume: { part: 'a-1' } });
    expect(resumed.sha256).toBe(digest);
    expect(resumed.resumedFrom).toBeGreaterThanOrEqual(256 * 1024);
    expect(await exists(part)).toBe(false);
  });

  it('refuses to start when already aborted', async () => {
    await expect(copy({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(TransferAborted);
  });

  it('caps the bandwidth', async () => {
    await writeFile(path.join(root, 'src', 'one'), content.subarray(0, MiB));
    const started = performance.now();
    await copy({ source: addr('src/one'), rateLimitBytesPerSec: 2 * MiB });
    // the bucket holds 0.1 s of traffic, so 1 MiB at 2 MiB/s needs at least 0.4 s
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
  });

  it('rejects addresses outside the root, missing sources and bad or reserved names', async () => {
    await mkdir(path.join(base, 'outside'));
    await writeFile(path.join(base, 'outside', 'secret'), 'x');
    await symlink(path.join(base, 'outside'), path.join(root, 'link'));
    const cases: [DataAddress, DataAddress][] = [
      [addr('../outside/secret'), addr('out')],
      [addr(path.join(base, 'outside', 'secret')), addr('out')],
      [source(), addr('../outside')],
      [addr('link/secret'), addr('out')],
      [source(), addr('link')],
      [source(), addr('link/new/dir')],
      [source(), addr('src/data.bin')],
      [source(), addr('link', { createDirectory: 'false' })],
      [addr('src/missing'), addr('out')],
      [addr('src'), addr('out')],
      [source(), addr('out', { fileName: '../x' })],
      [source(), addr('out', { fileName: '.ferry-done' })],
      [source(), addr('out', { fileName: 'x.part' })],
      [source(), { endpointType: 'HttpData', endpoint: 'http://example.org', endpointProperties: [] }],
    ];
    for (const [s, d] of cases) {
      await expect(copy({ source: s, destination: d }), JSON.stringify([s, d])).rejects.toBeInstanceOf(TransferRejected);
    }
    // nothing was created through the symlink either
    expect(await readdir(path.join(base, 'outside'))).toEqual(['secret']);
  });

  it('keeps flows apart: two flows into one destination get a directory each', async () => {
    const a = await copy({ flowId: 'flow-a' });
    const b = await copy({ flowId: 'flow-b' });
    expect(path.dirname(a.file)).not.toBe(path.dirname(b.file));
    expect((await readFile(a.file)).equals(content) && (await readFile(b.file)).equals(content)).toBe(true);
  });

  it('commonPrefix finds the first differing byte', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), fc.nat(300), (x, y, cut) => {
        const a = Buffer.from(x);
        const b = Buffer.concat([a.subarray(0, cut), Buffer.from(y)]);
        let expected = 0;
        while (expected < a.length && expected < b.length && a[expected] === b[expected]) expected++;
        expect(commonPrefix(a, b)).toBe(expected);
      }),
    );
  });
});

/**
 * Issue 7 (1, 5): what a counterparty names as File destination must never write over an existing
 * file, into a directory not made for its flow, or through a symlink. Real files; every case was a
 * write over the victim before the per-flow directory, O_EXCL/O_NOFOLLOW and link().
 */
describe('copyFile against a hostile destination', () => {
  const victim = Buffer.from('the provider asset, not to be replaced');
  const intact = async (file: string) => expect((await readFile(file)).equals(victim)).toBe(true);

  it('destination "assets" + the name of an existing asset leaves the asset alone', async () => {
    await mkdir(path.join(root, 'assets'));
    await writeFile(path.join(root, 'assets', 'big.bin'), victim);
    const r = await copy({ destination: addr('assets', { fileName: 'big.bin' }) }).catch((e: unknown) => e);
    await intact(path.join(root, 'assets', 'big.bin'));
    // delivered (if at all) only into a directory of the flow's own
    if (!(r instanceof Error)) expect((r as { file: string }).file).toBe(path.join(root, 'assets', 'flow-1', 'big.bin'));
    // claiming the directory was provisioned does not make it so: without a flow marker it is
    // treated as any destination (a provisioning service's own directory), the flow's directory made inside
    const claimed = await copy({ flowId: 'flow-2', destination: addr('assets', { fileName: 'big.bin', createDirectory: 'false' }) });
    expect(claimed.file).toBe(path.join(root, 'assets', 'flow-2', 'big.bin'));
    await intact(path.join(root, 'assets', 'big.bin'));
  });

  it('"inbox/tenant-y" + another tenant\'s file name leaves the tenant\'s file alone', async () => {
    await mkdir(path.join(root, 'inbox', 'tenant-y'), { recursive: true });
    await writeFile(path.join(root, 'inbox', 'tenant-y', 'report.csv'), victim);
    for (const destination of [addr('inbox/tenant-y', { fileName: 'report.csv' }), addr('inbox/tenant-y', { fileName: 'report.csv', createDirectory: 'false' })]) {
      await copy({ destination }).catch(() => undefined);
      await intact(path.join(root, 'inbox', 'tenant-y', 'report.csv'));
    }
    expect(await readdir(path.join(root, 'inbox', 'tenant-y'))).not.toContain('report.csv.part');
  });

  it('a flow directory named like an existing one of another flow is refused', async () => {
    await mkdir(path.join(root, 'inbox', 'flow-1'), { recursive: true });
    await writeFile(path.join(root, 'inbox', 'flow-1', 'data.bin'), victim);
    await expect(copy({ destination: addr('inbox') })).rejects.toBeInstanceOf(TransferRejected);
    await intact(path.join(root, 'inbox', 'flow-1', 'data.bin'));
    await writeFile(path.join(root, 'inbox', 'flow-1', '.ferry-flow'), JSON.stringify({ flowId: 'flow-9' }));
    await expect(copy({ destination: addr('inbox') })).rejects.toBeInstanceOf(TransferRejected);
    await intact(path.join(root, 'inbox', 'flow-1', 'data.bin'));
  });

  it('a planted .part symlink pointing outside the root is never written through', async () => {
    const outside = path.join(base, 'outside.bin');
    await writeFile(outside, victim);
    const provisioned = await provisionedDir('inbox/flow-c');
    const dir = path.join(root, 'inbox', 'flow-c');
    // at every name an attempt may write: the plain .part, this attempt's, and the one it resumes
    for (const name of ['data.bin.part', 'data.bin.a-2.part', 'data.bin.a-1.part']) await symlink(outside, path.join(dir, name));
    const r = await copy({ destination: provisioned, attempt: 'a-2', resume: { part: 'a-1' } });
    await intact(outside);
    expect(r.sha256).toBe(digest);
    expect((await readFile(path.join(dir, 'data.bin'))).equals(content)).toBe(true);
    expect((await lstat(path.join(dir, 'data.bin'))).isSymbolicLink()).toBe(false);
  });

  it('a hard-linked part is never written (it would change the other name too)', async () => {
    const other = path.join(root, 'elsewhere.bin');
    await writeFile(other, Buffer.concat([content.subarray(0, MiB), victim]));
    const before = await readFile(other);
    const provisioned = await provisionedDir('inbox/flow-c');
    await link(other, path.join(root, 'inbox', 'flow-c', 'data.bin.a-1.part'));
    expect((await copy({ destination: provisioned, attempt: 'a-2', resume: { part: 'a-1' } })).sha256).toBe(digest);
    expect((await readFile(other)).equals(before)).toBe(true);
  });

  it('a symlinked flow directory is refused, inside the root or out', async () => {
    await mkdir(path.join(root, 'assets'));
    await writeFile(path.join(root, 'assets', 'data.bin'), victim);
    await writeFile(path.join(root, 'assets', '.ferry-flow'), JSON.stringify({ flowId: 'x' }));
    await mkdir(path.join(root, 'inbox'));
    // a provisioned-looking directory that is a symlink to the assets
    await symlink(path.join(root, 'assets'), path.join(root, 'inbox', 'flow-c'));
    await expect(copy({ destination: addr('inbox/flow-c', { createDirectory: 'false' }) })).rejects.toBeInstanceOf(TransferRejected);
    // the transfer's own flow directory, planted as a symlink
    await symlink(path.join(root, 'assets'), path.join(root, 'inbox', 'flow-1'));
    await expect(copy({ destination: addr('inbox') })).rejects.toBeInstanceOf(TransferRejected);
    await intact(path.join(root, 'assets', 'data.bin'));
    expect((await readdir(path.join(root, 'assets'))).sort()).toEqual(['.ferry-flow', 'data.bin']);
  });

  it('an existing file under the final name in the flow directory is never replaced', async () => {
    const provisioned = await provisionedDir('inbox/flow-c');
    await writeFile(path.join(root, 'inbox', 'flow-c', 'data.bin'), victim);
    await expect(copy({ destination: provisioned })).rejects.toBeInstanceOf(TransferRejected);
    await intact(path.join(root, 'inbox', 'flow-c', 'data.bin'));
  });
});

/** Issue 9: attempts of one flow, one at a time; a finished copy is finished. */
describe('copyFile across attempts', () => {
  it('a finished copy whose completion was lost is returned as it is by the retry, not copied again', async () => {
    const first = await copy({ attempt: 'a-1' });
    // the source changes afterwards: a retry that copied again would deliver different bytes
    await writeFile(path.join(root, 'src', 'data.bin'), randomBytes(1000));
    const retry = await copy({ attempt: 'a-2', resume: { part: 'a-1' } });
    expect(retry).toEqual({ ...first, resumedFrom: content.length, alreadyDelivered: true });
    expect((await readFile(first.file)).equals(content)).toBe(true);
  });

  it('an attempt that died between its record and its link is finished by the retry', async () => {
    const first = await copy({ attempt: 'a-1' });
    // undo the link: the state right after the record was written
    await rename(first.file, path.join(path.dirname(first.file), 'data.bin.a-1.part'));
    const retry = await copy({ attempt: 'a-2' });
    expect(retry).toMatchObject({ sha256: digest, alreadyDelivered: true });
    expect((await readFile(first.file)).equals(content)).toBe(true);
    expect(await readdir(path.dirname(first.file))).not.toContainEqual(expect.stringMatching(/\.part$/));
  });

  it('a delivered file removed afterwards is delivered again (the stale record goes)', async () => {
    const first = await copy({ attempt: 'a-1' });
    await rm(first.file);
    expect(await copy({ attempt: 'a-2' })).toMatchObject({ sha256: digest, alreadyDelivered: false });
  });

  it('a zombie attempt stops writing once a newer attempt takes its part over; one delivery', async () => {
    let takeOver!: () => void;
    const zombieWrote = new Promise<void>((resolve) => (takeOver = resolve));
    const zombieOffsets: number[] = [];
    // the old attempt, slow (its lease lost, say, while the worker was partitioned)
    const zombie = copy({
      attempt: 'a-1',
      rateLimitBytesPerSec: 512 * 1024,
      onProgress: (p) => {
        if (p.phase !== 'copying') return;
        zombieOffsets.push(p.offset);
        if (p.offset >= MiB) takeOver();
      },
    }).then(
      () => 'completed',
      (e: unknown) => e,
    );
    await zombieWrote;
    const retry = await copy({ attempt: 'a-2', resume: { part: 'a-1' } });
    const outcome = await zombie;
    expect(outcome).toBeInstanceOf(AttemptSuperseded);
    expect(retry.sha256).toBe(digest);
    expect(retry.resumedFrom).toBeGreaterThanOrEqual(MiB);
    const dir = path.dirname(retry.file);
    expect((await readdir(dir)).sort()).toEqual(['.ferry-done', '.ferry-flow', 'data.bin']);
    expect((await readFile(retry.file)).equals(content)).toBe(true);
    // the zombie stopped long before the end: it never got near a complete copy
    expect(Math.max(...zombieOffsets)).toBeLessThan(content.length / 2);
  });
});
