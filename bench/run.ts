import { randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile as fsCopyFile, mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { EdrTokens } from '../activities/pull/EdrTokens.js';
import { PullSessions } from '../activities/pull/PullSessions.js';
import { copyFile } from '../activities/transfer/FileTransfer.js';
import { Keyring } from '../src/keys.js';
import { startPublicApiServer } from '../worker/publicApiServer.js';

/**
 * `npm run bench`: File→File throughput of the data plane's `copyFile` (sha256, fsync, atomic rename,
 * re-read verification) against two plain copies of the same file; and an HttpData pull through the
 * data plane's public endpoint (token check, streamed File source) against a plain Node.js HTTP file
 * server, both downloaded over loopback into a file. Measured in the same run and interleaved so that
 * disk and cache conditions hit every method alike. (The pull's per-request check of the DataFlow is
 * a Temporal query in production; here it answers in-process, so the ratio is that of the data path.)
 *
 *   BENCH_MB    file size in MiB (default 256)
 *   BENCH_REPS  measured repetitions per method (default 5; one extra warm-up round is discarded)
 *   BENCH_DIR   where the temp files go (default the OS temp dir)
 *   --json      print the results as JSON too
 */

const BENCH_HELP = `Usage: npm run bench [-- --json]

File→File throughput of the data plane's copyFile against plain copies, and an HttpData pull
through the public endpoint against a plain HTTP file server, measured in the same run; prints ratios.

Environment: BENCH_MB (file size in MiB, default 256), BENCH_REPS (repetitions, default 5),
BENCH_DIR (temp files, default the OS temp dir). --json prints the results as JSON too.`;
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(BENCH_HELP);
  process.exit(0);
}

const MiB = 1024 * 1024;

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const sizeMiB = positiveInt('BENCH_MB', 256);
const reps = positiveInt('BENCH_REPS', 5);
const json = process.argv.includes('--json');
const bytes = sizeMiB * MiB;

interface Method {
  name: string;
  /** Copies the source file once; `i` makes the output unique. Returns the output path (removed after timing). */
  run(i: number): Promise<string>;
}

async function writeSource(file: string): Promise<void> {
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

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

const mbps = (ms: number): number => bytes / 1e6 / (ms / 1000);

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'ferry-bench-'));
  const closers: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const close of closers) await close().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  };
  const onSignal = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const source = path.join(root, 'src', 'data.bin');
    await mkdir(path.dirname(source), { recursive: true });
    await mkdir(path.join(root, 'out'), { recursive: true });
    console.log(`ferry bench: ${sizeMiB} MiB file, ${reps} runs per method (+1 warm-up), node ${process.version}, ${os.cpus().length} CPUs`);
    console.log(`temp dir ${root}`);
    await writeSource(source);

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
          const result = await copyFile({
            root,
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
      {
        name: 'pull',
        run: (i) => download(api.url, path.join(root, 'out', `pull-${i}.bin`), { authorization: token }),
      },
      {
        name: 'http',
        run: (i) => download(plainUrl, path.join(root, 'out', `http-${i}.bin`)),
      },
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
      process.stdout.write(round === 0 ? 'warm-up done' : ` ${round}`);
    }
    process.stdout.write('\n\n');

    const rows = methods.map((m) => {
      const ms = samples.get(m.name)!;
      return { method: m.name, medianMBps: mbps(median(ms)), minMBps: mbps(Math.max(...ms)), maxMBps: mbps(Math.min(...ms)), medianMs: median(ms) };
    });
    const fmt = (n: number) => n.toFixed(0).padStart(7);
    console.log(`${'method'.padEnd(12)} ${'median'.padStart(7)} ${'min'.padStart(7)} ${'max'.padStart(7)}   MB/s (1 MB = 10^6 bytes)`);
    for (const r of rows) console.log(`${r.method.padEnd(12)} ${fmt(r.medianMBps)} ${fmt(r.minMBps)} ${fmt(r.maxMBps)}`);

    const by = Object.fromEntries(rows.map((r) => [r.method, r.medianMBps]));
    const ratios = {
      'copyFile / pipeline': by.copyFile! / by.pipeline!,
      'copyFile / fs.copyFile': by.copyFile! / by['fs.copyFile']!,
      'pull / http': by.pull! / by.http!,
    };
    console.log('');
    for (const [name, ratio] of Object.entries(ratios)) console.log(`${name.padEnd(24)} ${ratio.toFixed(2)}`);
    if (json) console.log(JSON.stringify({ sizeMiB, reps, node: process.version, results: rows, ratios }));
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
