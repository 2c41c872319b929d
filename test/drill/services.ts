import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from 'node:net';
import path from 'node:path';
import type { DataAddress } from '../../src/DataAddress.js';
import { readBody, send } from '../fixtures/provisioningService.js';

/** The drill's own servers: a provisioning service as a production one behaves, a switchable TCP proxy, an HTTP source and a resumable sink. */

/**
 * sync     200 at once (address rewritten)
 * async    202, then the callback at once
 * held     202, the callback only when `release()` is called
 * held-stop (deprovision) a suspension's or termination's release held like `held`; a completion's answered at once
 * never    202, no callback ever
 * twice    202, then the same callback twice
 * slow     200 after `slowMs` (a provision call in flight for a while)
 */
export type ServiceMode = 'sync' | 'async' | 'held' | 'held-stop' | 'never' | 'twice' | 'slow';

export interface DrillProvisioner {
  url: string;
  /** How it answers each operation; switch between drills. */
  modes: { provision: ServiceMode; deprovision: ServiceMode };
  slowMs: number;
  /** Requests received, by op. */
  received: { provision: number; deprovision: number };
  callbacksSent: number;
  callbacksFailed: number;
  /** Sends every held callback (retried until the data plane answers). */
  release(): void;
  close(): Promise<void>;
}

/**
 * A provisioning service that behaves as the protocol asks of real ones: it retries a callback until
 * the data plane answers (a 2xx, or a 4xx it cannot fix), for up to `retryForMs`.
 */
export async function startDrillProvisioner(opts: { fileRoot: string; retryForMs?: number }): Promise<DrillProvisioner> {
  const retryForMs = opts.retryForMs ?? 15 * 60_000;
  const held: (() => void)[] = [];
  const created = new Set<string>();
  const pending = new Set<Promise<void>>();
  let closed = false;
  const svc: DrillProvisioner = {
    url: '',
    modes: { provision: 'sync', deprovision: 'sync' },
    slowMs: 5_000,
    received: { provision: 0, deprovision: 0 },
    callbacksSent: 0,
    callbacksFailed: 0,
    release() {
      for (const send of held.splice(0)) send();
    },
    close: async () => {
      closed = true;
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };

  const callback = (url: string, body: unknown) => {
    const p = (async () => {
      const until = Date.now() + retryForMs;
      while (!closed && Date.now() < until) {
        try {
          const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
          await res.arrayBuffer();
          if (res.ok || (res.status >= 400 && res.status < 500 && res.status !== 429)) {
            if (res.ok) svc.callbacksSent++;
            else svc.callbacksFailed++;
            return;
          }
        } catch {
          // the data plane is away: try again
        }
        await new Promise((r) => setTimeout(r, 1_000));
      }
      svc.callbacksFailed++;
    })();
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  const schedule = (mode: ServiceMode, url: string, body: unknown) => {
    if (mode === 'async') callback(url, body);
    if (mode === 'twice') {
      callback(url, body);
      callback(url, body);
    }
    if (mode === 'held') held.push(() => callback(url, body));
  };

  const rewrite = async (address: DataAddress, flowId: string): Promise<{ address: DataAddress; resource: Record<string, string> }> => {
    if (address.endpointType === 'File') {
      const dir = path.resolve(opts.fileRoot, address.endpoint, `svc-${flowId}`);
      await mkdir(dir, { recursive: true });
      created.add(dir);
      return { address: { ...address, endpoint: dir }, resource: { dir } };
    }
    const props = address.endpointProperties.filter((p) => p.name !== 'authorization');
    return { address: { ...address, endpointProperties: [...props, { name: 'authorization', value: `Bearer svc-${flowId}` }] }, resource: {} };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const op = req.url === '/provision' ? 'provision' : req.url === '/deprovision' ? 'deprovision' : undefined;
    if (req.method !== 'POST' || !op) return send(res, 404, { error: 'not found' });
    const body = JSON.parse(await readBody(req)) as { flowId: string; callbackUrl: string; address?: DataAddress; resource?: Record<string, string>; reason?: string };
    svc.received[op]++;
    const mode = svc.modes[op];
    if (op === 'provision') {
      const { address, resource } = await rewrite(body.address!, body.flowId);
      if (mode === 'sync') return send(res, 200, { address, resource });
      if (mode === 'slow') {
        await new Promise((r) => setTimeout(r, svc.slowMs));
        return send(res, 200, { address, resource });
      }
      send(res, 202, { resource });
      return schedule(mode, body.callbackUrl, { ok: true, address });
    }
    const dir = body.resource?.dir;
    if ((body.reason === 'terminated' || body.reason === 'failed') && dir && created.has(dir)) {
      await rm(dir, { recursive: true, force: true });
      created.delete(dir);
    }
    if (mode === 'sync' || mode === 'slow' || (mode === 'held-stop' && body.reason === 'completed')) return send(res, 200, { released: true });
    send(res, 202, {});
    schedule(mode === 'held-stop' ? 'held' : mode, body.callbackUrl, { ok: true });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 400, { error: (e as Error).message });
    });
  });
  svc.url = await listen(server, 0);
  return svc;
}

/** A TCP proxy on a fixed port in front of a DSP endpoint: `down()` refuses connections (and cuts open ones) until `up()`. */
export interface TcpProxy {
  port: number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(port: number, target: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let server: TcpServer | undefined;
  const open = async () => {
    if (server) return;
    server = createTcpServer((client) => {
      const upstream = connect(target, '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(port, '127.0.0.1', () => resolve());
    });
  };
  const shut = async () => {
    const s = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    if (s) await new Promise((r) => s.close(r));
  };
  await open();
  return { port, down: shut, up: open, close: shut };
}

/** A finite HTTP source: GET answers `content` with its length. */
export async function startHttpSource(content: Buffer): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(content.length) });
    res.end(req.method === 'HEAD' ? undefined : content);
  });
  const url = await listen(server, 0);
  return { url, close: () => closeServer(server) };
}

/**
 * An HTTP sink that resumes (HEAD → Upload-Offset) and keeps, per path, what it holds and every body
 * it received in full: `complete` counts bodies that ended with the whole content (a delivery).
 */
export interface ResumableSink {
  url: string;
  held(pathname: string): Buffer | undefined;
  /** Complete deliveries per path: bodies that ended holding `size` bytes. */
  deliveries(pathname: string, size: number): { count: number; sha256?: string };
  close(): Promise<void>;
}

export async function startResumableSink(): Promise<ResumableSink> {
  const stored = new Map<string, Buffer>();
  const finished = new Map<string, { bytes: number; sha256: string }[]>();
  const server = createServer((req, res) => {
    const key = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'HEAD') return void res.writeHead(200, { 'upload-offset': String(stored.get(key)?.length ?? 0) }).end();
    const offset = Number(req.headers['upload-offset'] ?? 0);
    const chunks: Buffer[] = [(stored.get(key) ?? Buffer.alloc(0)).subarray(0, Number.isSafeInteger(offset) ? offset : 0)];
    req.on('data', (d: Buffer) => {
      chunks.push(d);
    });
    const keep = () => stored.set(key, Buffer.concat(chunks));
    // a body cut short keeps what arrived: the pusher resumes from there
    req.on('close', () => {
      if (!req.complete) keep();
    });
    req.on('end', () => {
      keep();
      const whole = stored.get(key)!;
      finished.set(key, [...(finished.get(key) ?? []), { bytes: whole.length, sha256: createHash('sha256').update(whole).digest('hex') }]);
      res.writeHead(204).end();
    });
  });
  const url = await listen(server, 0);
  return {
    url,
    held: (p) => stored.get(p),
    deliveries: (p, size) => {
      const full = (finished.get(p) ?? []).filter((f) => f.bytes === size);
      return { count: full.length, ...(full.length ? { sha256: full.at(-1)!.sha256 } : {}) };
    },
    close: () => closeServer(server),
  };
}

async function listen(server: Server, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}
