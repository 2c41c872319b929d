import { randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile as fsCopyFile, mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { EdrTokens } from '../activities/pull/EdrTokens.js';
import { PullSessions } from '../activities/pull/PullSessions.js';
import { copyFile } from '../activities/transfer/FileTransfer.js';
import { Keyring } from '../src/keys.js';
import { startPublicApiServer } from '../worker/publicApiServer.js';
import { median, ratio } from './stats.js';
import type { BenchContext, BenchMode, BenchRow } from './types.js';

/**
 * Data path (the measures bench/run.ts had before issue 12; the data-path goal's own measures
 * replace this file): File→File throughput of the data plane's `copyFile` (sha256, fsync, atomic
 * rename, re-read verification) against two plain copies of the same file; and an HttpData pull
 * through the data plane's public endpoint (token check, streamed File source) against a plain
 * Node.js HTTP file server, both downloaded over loopback into a file. Interleaved, rotating the
 * order each round, so disk and cache conditions hit every method alike. (The pull's per-request
 * check of the DataFlow is a Temporal query in production; here it answers in-process.)
 *
 *   BENCH_MB    file size in MiB (default: quick 8, normal 256, full 1024)
 *   BENCH_REPS  measured repetitions per method (default: quick 1, normal 3, full 5; +1 warm-up)
 *   BENCH_DIR   where the temp files go (default the run's temp dir)
 */

const MiB = 1024 * 1024;
const SIZES: Record<BenchMode, { mib: number; reps: number }> = { quick: { mib: 8, reps: 1 }, normal: { mib: 256, reps: 3 }, full: { mib: 1024, reps: 5 } };

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

interface Method {
  name: string;
  /** Copies the source file once; `i` makes the output unique. Returns the output path (removed after timing). */
  run(i: number): Promise<string>;
}

async function writeSource(file: string, bytes: number): Promise<void> {
  const fh = await open(file, 'w');
  try {
    const chunk = Buffer.allocUnsafe(4 * MiB);
    for (let written = 0; written < bytes; ) {
      const n = Math.min(chunk.length, bytes - written);
      randomFillSync(chunk, 0, n);
      await fh.write(chunk, 0, n, written);
      written += n;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const sizeMiB = positiveInt('BENCH_MB', SIZES[ctx.mode].mib);
  const reps = positiveInt('BENCH_REPS', SIZES[ctx.mode].reps);
  const bytes = sizeMiB * MiB;
  const root = process.env.BENCH_DIR ? await mkdtemp(path.join(process.env.BENCH_DIR, 'ferry-bench-')) : ctx.tmpDir;
  const closers: (() => Promise<void>)[] = [];
  try {
    const source = path.join(root, 'src', 'data.bin');
    await mkdir(path.dirname(source), { recursive: true });
    await mkdir(path.join(root, 'out'), { recursive: true });
    ctx.log(`${sizeMiB} MiB file, ${reps} runs per method (+1 warm-up), in ${root}`);
    await writeSource(source, bytes);

    // the pull's public endpoint, and a plain file server as its baseline
    const tokens = new EdrTokens(Keyring.generate('bench'), 'bench-dp', 3_600_000);
    const { token, claims } = await tokens.issue({ flowId: 'bench', workflowId: 'dataflow-bench' });
    const api = await startPublicApiServer({
      host: '127.0.0.1',
      port: 0,
      access: async () => ({ state: 'STARTED', liveTokenIds: [claims.tokenId], source: { endpointType: 'File', endpoint: 'src/data.bin', endpointProperties: [] } }),
      tokens,
      sessions: new PullSessions(),
      fileRoot: root,
    });
    const plain = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(bytes) });
      void pipeline(createReadStream(source, { highWaterMark: 256 * 1024 }), res).catch(() => res.destroy());
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    closers.push(() => api.close(), () => new Promise<void>((r) => plain.close(() => r())));
    const download = async (url: string, out: string, headers: Record<string, string> = {}) => {
      const res = await fetch(url, { headers });
      if (res.status !== 200 || !res.body) throw new Error(`GET ${url} answered ${res.status}`);
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(out));
      return out;
    };
    const plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}/`;

    const methods: Method[] = [
      {
        name: 'copyFile',
        async run(i) {
          await mkdir(path.join(root, 'out', `copyFile-${i}`));
          const result = await copyFile({
            root,
            flowId: `bench-${i}`,
            source: { endpointType: 'File', endpoint: 'src/data.bin', endpointProperties: [] },
            destination: { endpointType: 'File', endpoint: `out/copyFile-${i}`, endpointProperties: [] },
          });
          if (result.bytes !== bytes) throw new Error(`copyFile copied ${result.bytes} bytes, expected ${bytes}`);
          return path.dirname(result.file);
        },
      },
      {
        name: 'pipeline',
        async run(i) {
          const out = path.join(root, 'out', `pipeline-${i}.bin`);
          await pipeline(createReadStream(source), createWriteStream(out));
          return out;
        },
      },
      {
        name: 'fs.copyFile',
        async run(i) {
          const out = path.join(root, 'out', `fscopy-${i}.bin`);
          await fsCopyFile(source, out);
          return out;
        },
      },
      { name: 'pull', run: (i) => download(api.url, path.join(root, 'out', `pull-${i}.bin`), { authorization: token }) },
      { name: 'http', run: (i) => download(plainUrl, path.join(root, 'out', `http-${i}.bin`)) },
    ];

    const samples = new Map<string, number[]>(methods.map((m) => [m.name, []]));
    for (let round = 0; round <= reps; round++) {
      // Rotate the order each round so no method always runs right after another's writes.
      const order = methods.map((_, k) => methods[(k + round) % methods.length]!);
      for (const m of order) {
        const t0 = performance.now();
        const out = await m.run(round);
        const ms = performance.now() - t0;
        if (m.name !== 'copyFile' && (await stat(out)).size !== bytes) throw new Error(`${m.name} produced a file of the wrong size`);
        await rm(out, { recursive: true, force: true });
        if (round > 0) samples.get(m.name)!.push(ms);
      }
    }
    const mbps = (name: string) => bytes / 1e6 / (median(samples.get(name)!) / 1000);
    const row = (measure: string, ferry: string, base: string, note: string): BenchRow => ({
      goal: 'datapath',
      measure,
      ferry: mbps(ferry),
      baseline: mbps(base),
      ratio: ratio(mbps(ferry), mbps(base)),
      unit: 'MB/s',
      note: `${sizeMiB} MiB, median of ${reps}; ratio = ferry/baseline (higher is better). ${note}`,
    });
    return [
      row('File copy (copyFile) vs a plain stream.pipeline copy', 'copyFile', 'pipeline', "copyFile: the data plane's File→File copy (sha256, fsync, atomic rename, re-read to verify)"),
      row('File copy (copyFile) vs fs.copyFile', 'copyFile', 'fs.copyFile', 'fs.copyFile may use copy_file_range or reflinks'),
      row('pull through the public endpoint vs a plain Node HTTP file server', 'pull', 'http', 'both downloaded over loopback into a file with fetch'),
    ];
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    if (root !== ctx.tmpDir) await rm(root, { recursive: true, force: true });
  }
}
