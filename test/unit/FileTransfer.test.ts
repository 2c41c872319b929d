import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TransferAborted, TransferRejected, copyFile } from '../../activities/transfer/FileTransfer.js';
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
  content = randomBytes(5 * MiB + 12345);
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
const exists = (p: string) => stat(p).then(() => true, () => false);

describe('copyFile', () => {
  it('streams the file into the destination, verifying its sha256', async () => {
    const progress: number[] = [];
    const result = await copyFile({
      root,
      source: source(),
      destination: addr('out/nested'),
      progressEveryBytes: 2 * MiB,
      onProgress: (b) => progress.push(b),
    });
    const file = path.join(root, 'out', 'nested', 'data.bin');
    expect(result).toEqual({ bytes: content.length, sha256: digest, file });
    expect((await readFile(file)).equals(content)).toBe(true);
    expect(await readdir(path.dirname(file))).toEqual(['data.bin']);
    expect(progress.at(-1)).toBe(content.length);
    for (let i = 1; i < progress.length - 1; i++) expect(progress[i]! - progress[i - 1]!).toBeGreaterThanOrEqual(2 * MiB);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(content.length / (2 * MiB)) + 1);
  });

  it('never makes a provisioned directory (createDirectory false): one that is gone was released', async () => {
    await mkdir(path.join(root, 'inbox', 'flow-1'), { recursive: true });
    const provisioned = addr('inbox/flow-1', { createDirectory: 'false' });
    expect((await copyFile({ root, source: source(), destination: provisioned })).sha256).toBe(digest);
    await rm(path.join(root, 'inbox', 'flow-1'), { recursive: true });
    await expect(copyFile({ root, source: source(), destination: provisioned })).rejects.toThrow(new TransferRejected('destination directory "inbox/flow-1" is gone (released)'));
    expect(await exists(path.join(root, 'inbox', 'flow-1'))).toBe(false);
  });

  it('uses the destination fileName and copies empty files', async () => {
    const r = await copyFile({ root, source: source(), destination: addr(path.join(root, 'out'), { fileName: 'renamed.bin' }) });
    expect(r.file).toBe(path.join(root, 'out', 'renamed.bin'));
    await writeFile(path.join(root, 'src', 'empty'), '');
    const e = await copyFile({ root, source: addr('src/empty'), destination: addr('out') });
    expect(e).toMatchObject({ bytes: 0, sha256: createHash('sha256').digest('hex') });
  });

  it('resumes from the .part file and produces the same digest', async () => {
    const offset = 3 * MiB + 17;
    await mkdir(path.join(root, 'out'));
    // More than the offset, with garbage past it: the copy must cut it off.
    await writeFile(path.join(root, 'out', 'data.bin.part'), Buffer.concat([content.subarray(0, offset), randomBytes(1000)]));
    const progress: number[] = [];
    const r = await copyFile({ root, source: source(), destination: addr('out'), resumeFrom: offset, progressEveryBytes: 1, onProgress: (b) => progress.push(b) });
    expect(r.sha256).toBe(digest);
    expect(r.bytes).toBe(content.length);
    // Resumed, not restarted: the first report is already past the offset.
    expect(progress[0]).toBeGreaterThan(offset);
    expect((await readFile(r.file)).equals(content)).toBe(true);
  });

  it('starts over when the .part is missing, too short, or does not match the source', async () => {
    const out = path.join(root, 'out');
    await mkdir(out);
    const part = path.join(out, 'data.bin.part');
    const firstReport = async (resumeFrom: number) => {
      const progress: number[] = [];
      const r = await copyFile({ root, source: source(), destination: addr('out'), resumeFrom, progressEveryBytes: 1, onProgress: (b) => progress.push(b) });
      expect(r.sha256).toBe(digest);
      expect((await readFile(r.file)).equals(content)).toBe(true);
      return progress[0]!;
    };
    expect(await firstReport(MiB)).toBeLessThanOrEqual(MiB);
    await writeFile(part, content.subarray(0, 100));
    expect(await firstReport(MiB)).toBeLessThanOrEqual(MiB);
    const damaged = Buffer.from(content.subarray(0, 2 * MiB));
    damaged[12345] = damaged[12345]! ^ 0xff;
    await writeFile(part, damaged);
    expect(await firstReport(2 * MiB)).toBeLessThanOrEqual(MiB);
  });

  it('aborts promptly, leaving the .part file for a resume', async () => {
    const ac = new AbortController();
    let reported = 0;
    const started = Date.now();
    const err = await copyFile({
      root,
      source: source(),
      destination: addr('out'),
      rateLimitBytesPerSec: 2 * MiB,
      progressEveryBytes: 512 * 1024,
      signal: ac.signal,
      onProgress: (b) => {
        reported = b;
        if (b >= MiB) ac.abort();
      },
    }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(2500);
    expect(err).toBeInstanceOf(TransferAborted);
    expect((err as Error).name).toBe('AbortError');
    const part = path.join(root, 'out', 'data.bin.part');
    expect((await stat(part)).size).toBeGreaterThanOrEqual(reported);
    expect(await exists(path.join(root, 'out', 'data.bin'))).toBe(false);

    const resumed = await copyFile({ root, source: source(), destination: addr('out'), resumeFrom: reported });
    expect(resumed.sha256).toBe(digest);
    expect(await exists(part)).toBe(false);
  });

  it('refuses to start when already aborted', async () => {
    await expect(copyFile({ root, source: source(), destination: addr('out'), signal: AbortSignal.abort() })).rejects.toBeInstanceOf(TransferAborted);
  });

  it('caps the bandwidth', async () => {
    await writeFile(path.join(root, 'src', 'one'), content.subarray(0, MiB));
    const started = performance.now();
    await copyFile({ root, source: addr('src/one'), destination: addr('out'), rateLimitBytesPerSec: 2 * MiB });
    // The bucket holds 0.1 s of traffic, so 1 MiB at 2 MiB/s needs at least 0.4 s.
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
  });

  it('rejects addresses outside the root, missing sources and bad names', async () => {
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
      [addr('src/missing'), addr('out')],
      [addr('src'), addr('out')],
      [source(), addr('out', { fileName: '../x' })],
      [source(), { endpointType: 'HttpData', endpoint: 'http://example.org', endpointProperties: [] }],
    ];
    for (const [s, d] of cases) {
      await expect(copyFile({ root, source: s, destination: d }), JSON.stringify([s, d])).rejects.toBeInstanceOf(TransferRejected);
    }
    // Nothing was created through the symlink either.
    expect(await readdir(path.join(base, 'outside'))).toEqual(['secret']);
  });
});
