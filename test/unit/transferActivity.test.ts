import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDataPlaneActivities, type TransferRequest, type TransferResult } from '../../activities/dataPlane.js';
import type { TransferProgress } from '../../activities/transfer/TransferAttempt.js';
import { DataPlaneConfigSchema } from '../../src/config.js';
import type { DataAddress } from '../../src/DataAddress.js';

/**
 * The `transfer` activity on real files and real loopback HTTP servers, in a MockActivityEnvironment:
 * heartbeats on a timer (also while no byte moves), cancellation that reaches a stalled copy,
 * budgets counted in attempts without progress, resume on retry (File: the part; HttpData: the
 * sink's Upload-Offset), and a finished copy recognised.
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-transfer-'));
const data = randomBytes(3 * MiB + 333);
const dataSha = createHash('sha256').update(data).digest('hex');
mkdirSync(path.join(root, 'src'));
mkdirSync(path.join(root, 'out'));
mkdirSync(path.join(root, 'out-budget'));
writeFileSync(path.join(root, 'src', 'data.bin'), data);
const servers: Server[] = [];

afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const file = (endpoint: string, props: Record<string, string> = {}): DataAddress => ({
  endpointType: 'File',
  endpoint,
  endpointProperties: Object.entries(props).map(([name, value]) => ({ name, value })),
});
const http = (endpoint: string): DataAddress => ({ endpointType: 'HttpData', endpoint, endpointProperties: [] });

function activities(dataFlow: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  // the sinks are on loopback: a private network the data plane must be allowed to reach
  const config = DataPlaneConfigSchema.parse({ instanceId: 'dp', fileRoot: root, allowPrivateNetworks: true, dataFlow: { transferHeartbeatInterval: '50ms', ...dataFlow }, ...extra });
  // `transfer` never calls the Temporal client: a lazy one that connects nowhere
  return createDataPlaneActivities({ config, provisioners: [], client: new Client(), callbackUrl: () => '' });
}

/** Runs `transfer` as attempt `attempt` with the heartbeat details a previous attempt left. */
function run(req: TransferRequest, opts: { attempt?: number; details?: unknown; acts?: ReturnType<typeof activities>; onBeat?: (d: TransferProgress, env: MockActivityEnvironment) => void } = {}) {
  const env = new MockActivityEnvironment({ attempt: opts.attempt ?? 1, heartbeatDetails: opts.details, activityId: '7' });
  const beats: TransferProgress[] = [];
  env.on('heartbeat', (d: TransferProgress) => {
    beats.push(d);
    opts.onBeat?.(d, env);
  });
  const result: Promise<TransferResult> = env.run((opts.acts ?? activities()).transfer, req);
  return { env, beats, result };
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A sink that reads until it has `stallAfter` bytes, then stops reading until `resume()`. */
async function stallingSink(stallAfter: number) {
  let resume!: () => void;
  const resumed = new Promise<void>((r) => (resume = r));
  const got: Buffer[] = [];
  let stalled!: () => void;
  const hasStalled = new Promise<void>((r) => (stalled = r));
  const url = await listen((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= stallAfter && !req.isPaused()) {
        req.pause();
        stalled();
        void resumed.then(() => req.resume());
      }
    });
    req.on('end', () => res.writeHead(204).end());
  });
  return { url, resume, hasStalled, received: () => Buffer.concat(got) };
}

describe('transfer activity: heartbeats', () => {
  it('beats on a timer while no byte moves (a stalled sink), and completes', async () => {
    const sink = await stallingSink(64 * KiB);
    let beatsWhileStalled = 0;
    let stalled = false;
    void sink.hasStalled.then(() => (stalled = true));
    const { beats, result } = run(
      { flowId: 'f-beat', source: file('src/data.bin'), destination: http(`${sink.url}/in`) },
      {
        onBeat: () => {
          // byte-driven heartbeats would never come now: the sink reads nothing
          if (stalled && ++beatsWhileStalled === 5) sink.resume();
        },
      },
    );
    const r = await result;
    expect(r).toMatchObject({ bytes: data.length, sha256: dataSha });
    expect(beatsWhileStalled).toBeGreaterThanOrEqual(5);
    expect(createHash('sha256').update(sink.received()).digest('hex')).toBe(dataSha);
    expect(beats[0]).toMatchObject({ attempt: 1, lastProgressAttempt: 0, offset: 0 });
  });

  it('a cancellation reaches a stalled copy at once, whatever its speed', async () => {
    const sink = await stallingSink(64 * KiB);
    const { env, result } = run({ flowId: 'f-cancel', source: file('src/data.bin'), destination: http(`${sink.url}/in`) });
    await sink.hasStalled;
    env.cancel('CANCELLED');
    await expect(result).rejects.toMatchObject({ name: 'AbortError' });
    expect(sink.received().length).toBeLessThan(data.length);
  });

  it('a cancellation reaches a 64 KiB/s File copy at once and leaves the part', async () => {
    const acts = activities({}, { rateLimitBytesPerSec: 64 * KiB });
    const { env, result } = run(
      { flowId: 'f-slow', source: file('src/data.bin'), destination: file('out') },
      { acts, onBeat: (d, e) => d.offset >= 16 * KiB && e.cancel('CANCELLED') },
    );
    void env;
    await expect(result).rejects.toMatchObject({ name: 'AbortError' });
    const parts = (await readdir(path.join(root, 'out', 'f-slow'))).filter((f) => f.endsWith('.part'));
    expect(parts).toEqual(['data.bin.7-1.part']);
    expect((await stat(path.join(root, 'out', 'f-slow', parts[0]!))).size).toBeLessThan(data.length);
  });
});

describe('transfer activity: attempts', () => {
  it('resumes the previous attempt\'s part named in its heartbeat, and a finished copy is returned as it is', async () => {
    const acts = activities({}, { rateLimitBytesPerSec: 512 * KiB });
    const first = run({ flowId: 'f-resume', source: file('src/data.bin'), destination: file('out') }, { acts, onBeat: (d, e) => d.offset >= 256 * KiB && e.cancel('TIMED_OUT') });
    await expect(first.result).rejects.toMatchObject({ name: 'AbortError' });
    const last = first.beats.at(-1)!;
    expect(last).toMatchObject({ part: '7-1', attempt: 1, lastProgressAttempt: 1 });
    const second = run({ flowId: 'f-resume', source: file('src/data.bin'), destination: file('out') }, { attempt: 2, details: last });
    const r = await second.result;
    expect(r.sha256).toBe(dataSha);
    expect(r.resumedFrom).toBeGreaterThanOrEqual(256 * KiB);
    expect((await readFile(path.join(root, 'out', 'f-resume', 'data.bin'))).equals(data)).toBe(true);
    // its completion is lost ("activity not found"): attempt 3 finds the record, copies nothing
    const third = run({ flowId: 'f-resume', source: file('src/data.bin'), destination: file('out') }, { attempt: 3, details: second.beats.at(-1) });
    expect(await third.result).toEqual({ bytes: data.length, sha256: dataSha, resumedFrom: data.length, alreadyDelivered: true });
  });

  it('counts attempts without progress: the budget is spent only by attempts that moved nothing', async () => {
    const acts = activities({ transferMaxAttempts: 3 });
    const req = { flowId: 'f-budget', source: file('src/data.bin'), destination: file('out-budget') };
    // attempt 9, the last progress in attempt 7: two failures since, within 3
    expect((await run(req, { acts, attempt: 9, details: { offset: 10, attempt: 8, lastProgressAttempt: 7, phase: 'copying' } }).result).sha256).toBe(dataSha);
    // attempt 9, the last progress in attempt 5: three failures in a row without progress
    const spent = run({ ...req, flowId: 'f-budget-2' }, { acts, attempt: 9, details: { offset: 10, attempt: 8, lastProgressAttempt: 5, phase: 'copying' } });
    const err = await spent.result.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ nonRetryable: true, type: 'BudgetExhausted' });
  });

  it('a failure after progress asks for the next attempt at once; one without progress keeps the backoff', async () => {
    // a sink that takes 256 KiB and then drops the connection
    const url = await listen((req) => {
      let n = 0;
      req.on('data', (d: Buffer) => {
        n += d.length;
        if (n >= 256 * KiB) req.socket.destroy();
      });
    });
    const progressed = await run({ flowId: 'f-drop', source: file('src/data.bin'), destination: http(`${url}/in`) }).result.catch((e: unknown) => e);
    expect(progressed).toBeInstanceOf(ApplicationFailure);
    expect(progressed).toMatchObject({ nonRetryable: false, nextRetryDelay: 1000 });
    // nobody listens here: no byte moved
    const closed = await listen(() => undefined);
    servers.pop()!.close();
    const none = await run({ flowId: 'f-none', source: file('src/data.bin'), destination: http(`${closed}/in`) }).result.catch((e: unknown) => e);
    expect(none).not.toBeInstanceOf(ApplicationFailure);
    expect(none).toBeInstanceOf(Error);
  });
  it('an attempt that only sends again what an earlier one sent has not progressed: a sink that always fails spends the budget', async () => {
    // takes the whole body, then answers 503, every time; it cannot resume, so each retry starts over
    let bodies = 0;
    const url = await listen((req, res) => {
      req.on('data', () => undefined);
      req.on('end', () => {
        if (req.method !== 'HEAD') bodies += 1; // a retry asks first where the sink is (it says nothing)
        res.writeHead(503).end();
      });
    });
    const acts = activities({ transferMaxAttempts: 2 });
    const req = { flowId: 'f-503', source: file('src/data.bin'), destination: http(`${url}/in`) };
    // attempt 1 moved bytes nobody had moved: progress, retried at once
    const first = run(req, { acts });
    expect(await first.result.catch((e: unknown) => e)).toMatchObject({ nonRetryable: false, nextRetryDelay: 1000 });
    // attempt 2 sent the same bytes again: no progress, the usual backoff
    const second = run(req, { acts, attempt: 2, details: first.beats.at(-1) });
    const err2 = await second.result.catch((e: unknown) => e);
    expect(err2).not.toBeInstanceOf(ApplicationFailure);
    expect(second.beats.at(-1)).toMatchObject({ lastProgressAttempt: 1, highWater: data.length });
    // attempt 3 likewise; attempt 4 finds two attempts in a row without progress: the budget is spent
    const third = run(req, { acts, attempt: 3, details: second.beats.at(-1) });
    expect(await third.result.catch((e: unknown) => e)).not.toBeInstanceOf(ApplicationFailure);
    const fourth = run(req, { acts, attempt: 4, details: third.beats.at(-1) });
    expect(await fourth.result.catch((e: unknown) => e)).toMatchObject({ nonRetryable: true, type: 'BudgetExhausted' });
    expect(bodies).toBe(3);
  });
});

describe('transfer activity: HttpData resume', () => {
  /** A sink that keeps what it received per flow and answers HEAD with Upload-Offset. */
  async function resumableSink(opts: { dropAfter?: number; supportsResume: boolean }) {
    const stored = new Map<string, Buffer>();
    const requests: { method: string; offset?: string; range?: string; flow?: string; bytes: number }[] = [];
    const url = await listen((req, res) => {
      const flow = String(req.headers['x-ferry-flow-id'] ?? '');
      if (req.method === 'HEAD') {
        requests.push({ method: 'HEAD', flow, bytes: 0 });
        return void res.writeHead(200, opts.supportsResume ? { 'upload-offset': String(stored.get(flow)?.length ?? 0) } : {}).end();
      }
      const offset = Number(req.headers['upload-offset'] ?? 0);
      const entry = { method: req.method!, offset: String(req.headers['upload-offset']), ...(req.headers['content-range'] ? { range: String(req.headers['content-range']) } : {}), flow, bytes: 0 };
      requests.push(entry);
      let kept = opts.supportsResume ? (stored.get(flow) ?? Buffer.alloc(0)).subarray(0, offset) : Buffer.alloc(0);
      req.on('data', (d: Buffer) => {
        entry.bytes += d.length;
        kept = Buffer.concat([kept, d]);
        stored.set(flow, kept);
        if (opts.dropAfter && requests.filter((r) => r.method !== 'HEAD').length === 1 && kept.length >= opts.dropAfter) req.socket.destroy();
      });
      req.on('end', () => res.writeHead(204).end());
    });
    return { url, stored, requests };
  }

  it('a sink that says Upload-Offset gets only the rest on the retry', async () => {
    const sink = await resumableSink({ supportsResume: true, dropAfter: MiB });
    const req = { flowId: 'f-http', source: file('src/data.bin'), destination: http(`${sink.url}/in`) };
    const first = run(req);
    await expect(first.result).rejects.toBeInstanceOf(Error);
    const r = await run(req, { attempt: 2, details: first.beats.at(-1) }).result;
    expect(r).toMatchObject({ bytes: data.length, sha256: dataSha });
    expect(r.resumedFrom).toBeGreaterThanOrEqual(MiB);
    expect(createHash('sha256').update(sink.stored.get('f-http')!).digest('hex')).toBe(dataSha);
    const [, head, resumed] = sink.requests;
    expect(head).toMatchObject({ method: 'HEAD', flow: 'f-http' });
    expect(resumed).toMatchObject({ method: 'POST', offset: String(r.resumedFrom), range: `bytes ${r.resumedFrom}-${data.length - 1}/${data.length}`, bytes: data.length - r.resumedFrom! });
    // delivered but the completion lost: the next retry sends nothing
    const again = await run(req, { attempt: 3 }).result;
    expect(again).toMatchObject({ bytes: data.length, sha256: dataSha, resumedFrom: data.length });
    // nor does a later run of the flow (after a suspension) that says it continues one
    const later = await run({ ...req, continues: true }).result;
    expect(later).toMatchObject({ bytes: data.length, sha256: dataSha, resumedFrom: data.length });
    expect(sink.requests.filter((q) => q.method !== 'HEAD')).toHaveLength(2);
  });

  it('a sink that does not say starts over, and every body says so (flow id, Upload-Offset 0)', async () => {
    const sink = await resumableSink({ supportsResume: false, dropAfter: MiB });
    const req = { flowId: 'f-http-2', source: file('src/data.bin'), destination: http(`${sink.url}/in`) };
    const first = run(req);
    await expect(first.result).rejects.toBeInstanceOf(Error);
    const r = await run(req, { attempt: 2, details: first.beats.at(-1) }).result;
    expect(r).toMatchObject({ bytes: data.length, sha256: dataSha, resumedFrom: 0 });
    const bodies = sink.requests.filter((q) => q.method !== 'HEAD');
    expect(bodies.map((b) => [b.flow, b.offset])).toEqual([
      ['f-http-2', '0'],
      ['f-http-2', '0'],
    ]);
    expect(bodies[1]!.bytes).toBe(data.length);
  });
});
