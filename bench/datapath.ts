import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { EdrTokens } from '../activities/pull/EdrTokens.js';
import { PullSessions } from '../activities/pull/PullSessions.js';
import { copyFile } from '../activities/transfer/FileTransfer.js';
import { pushHttp } from '../activities/transfer/HttpTransfer.js';
import { Keyring } from '../src/keys.js';
import { startPublicApiServer } from '../worker/publicApiServer.js';
import { median, ratio } from './stats.js';
import type { BenchContext, BenchMode, BenchRow } from './types.js';

/**
 * The data-path goal of `npm run bench` (issue 12), each measure against a baseline measured in the
 * same run, interleaved round by round so that disk and cache conditions hit both alike:
 *
 * - File push (the data plane's copyFile: sha256 while copying, fsync, record, link) against
 *   `cp` + `sync FILE` (fsync) on the same disk, and against `cp` alone;
 * - HttpData push (File source → HTTP sink on loopback, through fetch) against `curl -T` to the same sink;
 * - HttpData pull (`curl` from the data plane's public endpoint, token checked) against `curl` from a
 *   plain Node.js HTTP file server;
 * - peak RSS of a File push of the largest size against one of 100 MiB (each in a fresh process):
 *   flat means a ratio of about 1.
 *
 * Every ferry figure runs in a child process of its own (clean RSS, no harness in the heap).
 * Sizes by mode: quick 16 MiB; normal 256 MiB and 1 GiB; full 1 GiB and 4 GiB (the issue's).
 * `tsx bench/datapath.ts` runs it alone (full sizes unless set):
 *
 *   DATAPATH_FILE_MB   File push sizes in MiB (e.g. "1024,4096")
 *   DATAPATH_HTTP_MB   HttpData push/pull size in MiB
 *   BENCH_REPS         measured rounds (after one warm-up round)
 *   BENCH_DIR          where the temp files go (use the disk you mean)
 */

/** A measure before it becomes a bench row: ratio = ferry / baseline. */
interface Measure {
  measure: string;
  ferry: number;
  baseline: number;
  unit: string;
  baselineName: string;
  target?: string;
}

export interface DatapathBenchOptions {
  fileSizesMiB?: number[];
  httpSizeMiB?: number;
  reps?: number;
  dir?: string;
  log?: (line: string) => void;
}

const MiB = 1024 * 1024;
const SELF = fileURLToPath(import.meta.url);

type ChildTask =
  | { kind: 'copy'; root: string; source: string; dest: string; flowId: string }
  | { kind: 'push'; root: string; source: string; url: string; flowId: string };

interface ChildResult {
  ms: number;
  maxRssMiB: number;
  bytes: number;
}

/** Runs one ferry data-path operation in a fresh process and reports its time and peak RSS. */
async function inChild(task: ChildTask): Promise<ChildResult> {
  const out = await exec(process.execPath, ['--import', 'tsx', SELF, '--child', JSON.stringify(task)]);
  return JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult;
}

async function child(task: ChildTask): Promise<void> {
  const file = (endpoint: string) => ({ endpointType: 'File' as const, endpoint, endpointProperties: [] });
  // the destination exists before a push (a provisioner or the operator made it)
  if (task.kind === 'copy') await mkdir(path.join(task.root, task.dest), { recursive: true });
  const t0 = performance.now();
  let bytes: number;
  if (task.kind === 'copy') {
    bytes = (await copyFile({ root: task.root, flowId: task.flowId, source: file(task.source), destination: file(task.dest) })).bytes;
  } else {
    bytes = (await pushHttp({ root: task.root, flowId: task.flowId, source: file(task.source), destination: { endpointType: 'HttpData', endpoint: task.url, endpointProperties: [{ name: 'method', value: 'PUT' }] } })).bytes;
  }
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ ms, maxRssMiB: process.resourceUsage().maxRSS / 1024, bytes }));
}

function exec(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')} exited ${code}: ${err.slice(-2000)}`))));
  });
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Writes `bytes` random bytes to `file` (synced) and returns their sha256. */
export async function writeRandom(file: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(file, 'w');
  try {
    const chunk = Buffer.allocUnsafe(8 * MiB);
    for (let written = 0; written < bytes; ) {
      const n = Math.min(chunk.length, bytes - written);
      randomFillSync(chunk, 0, n);
      hash.update(chunk.subarray(0, n));
      await fh.write(chunk, 0, n, written);
      written += n;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

const mbps = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000);

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function runDatapathBench(opts: DatapathBenchOptions = {}): Promise<Measure[]> {
  const fileSizes = opts.fileSizesMiB ?? [1024, 4096];
  const httpSize = opts.httpSizeMiB ?? 1024;
  const reps = opts.reps ?? 3;
  const log = opts.log ?? (() => undefined);
  const root = await mkdtemp(path.join(opts.dir ?? os.tmpdir(), 'ferry-datapath-'));
  const servers: Server[] = [];
  const rows: Measure[] = [];
  try {
    await mkdir(path.join(root, 'src'));
    await mkdir(path.join(root, 'out'));

    // File push against cp + fsync, per size
    for (const size of fileSizes) {
      const bytes = size * MiB;
      const source = path.join(root, 'src', `file-${size}.bin`);
      log(`writing a ${size} MiB source`);
      await writeRandom(source, bytes);
      const ferry: number[] = [];
      const cp: number[] = [];
      const cpPlain: number[] = [];
      for (let round = 0; round <= reps; round++) {
        const out = path.join(root, 'out', `r${round}`);
        const methods: [number[], () => Promise<number>][] = [
          [ferry, async () => (await inChild({ kind: 'copy', root, source: path.relative(root, source), dest: `out/r${round}`, flowId: `bench-${size}-${round}` })).ms],
          [cp, () => timed(async () => {
            await exec('cp', ['--reflink=never', source, `${out}.cp`]);
            await exec('sync', [`${out}.cp`]);
          })],
          [cpPlain, () => timed(() => exec('cp', ['--reflink=never', source, `${out}.cpplain`]))],
        ];
        // rotate the order so no method always follows another's writes
        for (let k = 0; k < methods.length; k++) {
          const [samples, method] = methods[(k + round) % methods.length]!;
          const ms = await method();
          if (round > 0) samples.push(ms);
        }
        await rm(out, { recursive: true, force: true });
        await rm(`${out}.cp`, { force: true });
        await rm(`${out}.cpplain`, { force: true });
        log(`File ${size} MiB round ${round}${round === 0 ? ' (warm-up)' : ''}: ferry ${ferry.at(-1)?.toFixed(0) ?? '-'} ms, cp+fsync ${cp.at(-1)?.toFixed(0) ?? '-'} ms`);
      }
      const label = size >= 1024 ? `${size / 1024} GiB` : `${size} MiB`;
      const f = mbps(bytes, median(ferry));
      const b = mbps(bytes, median(cp));
      rows.push({ measure: `File push ${label} (sha256, fsync) MB/s`, ferry: f, baseline: b, unit: 'MB/s', baselineName: 'cp + fsync', target: 'ratio ≥ 0.8' });
      const p = mbps(bytes, median(cpPlain));
      rows.push({ measure: `File push ${label} vs cp without fsync MB/s`, ferry: f, baseline: p, unit: 'MB/s', baselineName: 'cp' });
      if (size !== httpSize) await rm(source, { force: true });
    }

    // HttpData push and pull over loopback
    const httpBytes = httpSize * MiB;
    const httpSource = path.join(root, 'src', `file-${httpSize}.bin`);
    if (!fileSizes.includes(httpSize)) await writeRandom(httpSource, httpBytes);
    let received = 0;
    const sink = createServer((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => {
        received = n;
        res.writeHead(204).end();
      });
    });
    servers.push(sink);
    const sinkUrl = `${await listen(sink)}/in`;
    const pushes: number[] = [];
    const curlPushes: number[] = [];
    for (let round = 0; round <= reps; round++) {
      const a = (await inChild({ kind: 'push', root, source: path.relative(root, httpSource), url: sinkUrl, flowId: `push-${round}` })).ms;
      if (received !== httpBytes) throw new Error(`the sink got ${received} of ${httpBytes} bytes from ferry`);
      const b = await timed(() => exec('curl', ['-sS', '-f', '-T', httpSource, '-H', 'content-type: application/octet-stream', sinkUrl]));
      if (received !== httpBytes) throw new Error(`the sink got ${received} of ${httpBytes} bytes from curl`);
      if (round > 0) {
        pushes.push(a);
        curlPushes.push(b);
      }
      log(`HttpData push round ${round}: ferry ${a.toFixed(0)} ms, curl ${b.toFixed(0)} ms`);
    }
    const pf = mbps(httpBytes, median(pushes));
    const pb = mbps(httpBytes, median(curlPushes));
    rows.push({ measure: `HttpData push ${httpSize} MiB, loopback MB/s`, ferry: pf, baseline: pb, unit: 'MB/s', baselineName: 'curl -T', target: 'ratio ≥ 0.8' });

    const tokens = new EdrTokens(Keyring.generate('bench'), 'bench-dp', 3_600_000);
    const { token, claims } = await tokens.issue({ flowId: 'bench', workflowId: 'dataflow-bench' });
    const api = await startPublicApiServer({
      host: '127.0.0.1',
      port: 0,
      access: async () => ({ state: 'STARTED', liveTokenIds: [claims.tokenId], source: { endpointType: 'File', endpoint: path.relative(root, httpSource), endpointProperties: [] } }),
      tokens,
      sessions: new PullSessions(),
      fileRoot: root,
    });
    const plain = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(httpBytes), 'content-type': 'application/octet-stream' });
      void pipeline(createReadStream(httpSource, { highWaterMark: 1024 * 1024 }), res).catch(() => res.destroy());
    });
    servers.push(plain);
    const plainUrl = `${await listen(plain)}/file`;
    const pulls: number[] = [];
    const plainPulls: number[] = [];
    const curlGet = (url: string, headers: string[]) => async () => {
      const out = await exec('curl', ['-sS', '-f', '-o', '/dev/null', '-w', '%{size_download}', ...headers, url]);
      if (Number(out) !== httpBytes) throw new Error(`curl got ${out} of ${httpBytes} bytes from ${url}`);
    };
    try {
      for (let round = 0; round <= reps; round++) {
        const a = await timed(curlGet(api.url, ['-H', `authorization: ${token}`]));
        const b = await timed(curlGet(plainUrl, []));
        if (round > 0) {
          pulls.push(a);
          plainPulls.push(b);
        }
        log(`HttpData pull round ${round}: ferry ${a.toFixed(0)} ms, plain server ${b.toFixed(0)} ms`);
      }
    } finally {
      await api.close();
    }
    const lf = mbps(httpBytes, median(pulls));
    const lb = mbps(httpBytes, median(plainPulls));
    rows.push({ measure: `HttpData pull ${httpSize} MiB, loopback (curl) MB/s`, ferry: lf, baseline: lb, unit: 'MB/s', baselineName: 'curl ← plain Node file server', target: 'ratio ≥ 0.8' });

    // RSS: a File push of the largest size against one of 100 MiB, each in a fresh process
    const small = path.join(root, 'src', 'rss-100.bin');
    await writeRandom(small, 100 * MiB);
    const largest = Math.max(...fileSizes);
    const big = path.join(root, 'src', `file-${largest}.bin`);
    if (largest !== httpSize) await writeRandom(big, largest * MiB);
    const rssSmall = await inChild({ kind: 'copy', root, source: path.relative(root, small), dest: 'out/rss-small', flowId: 'rss-small' });
    const rssBig = await inChild({ kind: 'copy', root, source: path.relative(root, big), dest: 'out/rss-big', flowId: 'rss-big' });
    rows.push({
      measure: `peak RSS, File push ${largest >= 1024 ? `${largest / 1024} GiB` : `${largest} MiB`} vs 100 MiB (MiB)`,
      ferry: rssBig.maxRssMiB,
      baseline: rssSmall.maxRssMiB,
      unit: 'MiB',
      baselineName: '100 MiB push',
      target: 'ratio ≈ 1 (flat)',
    });
  } finally {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    await rm(root, { recursive: true, force: true });
  }
  return rows;
}

const SIZES: Record<BenchMode, { file: number[]; http: number; reps: number }> = {
  quick: { file: [16], http: 16, reps: 1 },
  normal: { file: [256, 1024], http: 256, reps: 3 },
  full: { file: [1024, 4096], http: 1024, reps: 3 },
};

/** The data-path rows of `npm run bench` (bench/run.ts imports this module). */
export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const size = SIZES[ctx.mode];
  const measures = await runDatapathBench({
    fileSizesMiB: positiveInts(process.env.DATAPATH_FILE_MB, size.file),
    httpSizeMiB: positiveInts(process.env.DATAPATH_HTTP_MB, [size.http])[0]!,
    reps: positiveInts(process.env.BENCH_REPS, [size.reps])[0]!,
    dir: process.env.BENCH_DIR ?? ctx.tmpDir,
    log: ctx.log,
  });
  return measures.map((m) => ({
    goal: 'datapath',
    measure: m.measure,
    ferry: m.ferry,
    baseline: m.baseline,
    ratio: ratio(m.ferry, m.baseline),
    unit: m.unit,
    ...(m.target ? { target: m.target } : {}),
    note: `baseline: ${m.baselineName}; ratio = ferry / baseline (${m.unit === 'MiB' ? 'about 1 is flat' : 'higher is better'}); medians of ${positiveInts(process.env.BENCH_REPS, [size.reps])[0]} rounds`,
  }));
}

function formatRows(rows: Measure[]): string {
  const lines = [`${'measure'.padEnd(52)} ${'ferry'.padStart(9)} ${'baseline'.padStart(9)} ${'ratio'.padStart(6)}  baseline, target`];
  for (const r of rows) {
    lines.push(`${r.measure.padEnd(52)} ${r.ferry.toFixed(0).padStart(9)} ${r.baseline.toFixed(0).padStart(9)} ${(r.ferry / r.baseline).toFixed(2).padStart(6)}  ${r.baselineName}${r.target ? `, ${r.target}` : ''}`);
  }
  return lines.join('\n');
}

function positiveInts(raw: string | undefined, fallback: number[]): number[] {
  if (!raw) return fallback;
  const xs = raw.split(',').map((x) => Number(x.trim()));
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x <= 0)) throw new Error(`expected positive integers, got ${JSON.stringify(raw)}`);
  return xs;
}

if (process.argv[1] === SELF) {
  const at = process.argv.indexOf('--child');
  if (at > 0) {
    child(JSON.parse(process.argv[at + 1]!) as ChildTask).catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
  } else {
    const started = Date.now();
    runDatapathBench({
      fileSizesMiB: positiveInts(process.env.DATAPATH_FILE_MB, [1024, 4096]),
      httpSizeMiB: positiveInts(process.env.DATAPATH_HTTP_MB, [1024])[0]!,
      reps: positiveInts(process.env.BENCH_REPS, [3])[0]!,
      ...(process.env.BENCH_DIR ? { dir: process.env.BENCH_DIR } : {}),
      log: (line) => console.log(line),
    }).then(
      (rows) => {
        console.log(`\n${formatRows(rows)}\n(${((Date.now() - started) / 1000).toFixed(0)} s, node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)})`);
        if (process.argv.includes('--json')) console.log(JSON.stringify(rows));
      },
      (e: unknown) => {
        console.error(e instanceof Error ? e.message : e);
        process.exit(1);
      },
    );
  }
}
