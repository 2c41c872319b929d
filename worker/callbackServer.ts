import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { DataAddressSchema } from '../src/schemas/DataAddress.js';
import { provisionerCallbackSignal, type ProvisionerCallback } from '../src/DataFlow.js';
import type { ProvisionSide } from '../src/Provisioner.js';
import type { Keyring } from '../src/keys.js';

/**
 * Receives the callbacks of external provisioning services and turns them into
 * `provisionerCallback` signals of the DataFlow workflow. The callback URL handed to a service is
 * signed (HMAC-SHA256 with the data plane's callback key, `FERRY_CALLBACK_KEYS`) over the workflow
 * id, op, provisioner, side, provisioning round and expiry, so a caller can only report on the very
 * operation and round it was asked to perform, and only until the URL expires (then 410, nothing
 * signalled). The signal carries the round; the DataFlow accepts only callbacks of the round it
 * waits for, so a URL replayed later cannot carry a result into another round.
 */

export type CallbackOp = 'provision' | 'deprovision';

export interface CallbackTarget {
  workflowId: string;
  op: CallbackOp;
  provisioner: string;
  side: ProvisionSide;
  /** The provisioning round the URL belongs to (a nonce the DataFlow chose); absent for flows that do not name rounds. */
  round?: string;
  /** After this the URL is refused (410). */
  expiresAt: Date;
}

export type CallbackVerdict =
  | { ok: true; target: CallbackTarget }
  /** 403: not a URL we signed (or tampered with); 410: ours, but expired. */
  | { ok: false; status: 403 | 410; message: string };

export interface CallbackSigner {
  callbackUrl(baseUrl: string, target: CallbackTarget): string;
  /** Checks a callback URL's query: signature first, then expiry. */
  verify(params: URLSearchParams, now?: Date): CallbackVerdict;
}

export const CALLBACK_PATH = '/callbacks/provision';

/** A signer over a keyring: the primary signs (its id goes in `kid`); every key of the ring verifies, so URLs handed out before a rotation still work. */
export function callbackSigner(keys: Keyring): CallbackSigner {
  const mac = (key: Buffer, kid: string, t: CallbackTarget): Buffer =>
    // A JSON array keeps the fields unambiguous whatever characters they contain.
    createHmac('sha256', key)
      .update(JSON.stringify(['ferry-callback-v2', kid, t.workflowId, t.op, t.provisioner, t.side, t.round ?? '', Math.floor(t.expiresAt.getTime() / 1000)]))
      .digest();
  const forbidden = { ok: false, status: 403, message: 'invalid callback signature' } as const;
  return {
    callbackUrl(baseUrl, target) {
      const { id, key } = keys.primary;
      const q = new URLSearchParams({
        wf: target.workflowId,
        op: target.op,
        p: target.provisioner,
        side: target.side,
        ...(target.round !== undefined ? { round: target.round } : {}),
        exp: String(Math.floor(target.expiresAt.getTime() / 1000)),
        kid: id,
        sig: mac(key, id, target).toString('base64url'),
      });
      return `${baseUrl.replace(/\/+$/, '')}${CALLBACK_PATH}?${q.toString()}`;
    },
    verify(params, now = new Date()) {
      const target = parseTarget(params);
      const kid = params.get('kid');
      const sig = params.get('sig');
      const key = kid ? keys.get(kid) : undefined;
      if (!target || !kid || !sig || !key) return forbidden;
      const expected = mac(key, kid, target);
      const given = Buffer.from(sig, 'base64url');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return forbidden;
      if (target.expiresAt.getTime() <= now.getTime()) return { ok: false, status: 410, message: 'callback URL expired' };
      return { ok: true, target };
    },
  };
}

const MAX_BODY_BYTES = 1024 * 1024;

const CallbackBodySchema = z.object({
  ok: z.boolean(),
  address: DataAddressSchema.optional(),
  // Services write long stack traces; keep what the workflow contract accepts instead of refusing the news.
  error: z
    .string()
    .optional()
    .transform((e) => (e === undefined ? undefined : e.slice(0, 2000))),
});

export interface CallbackServerLogger {
  warn(message: string, meta?: Record<string, unknown>): void;
}

export interface CallbackServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  client: Client;
  /** The data plane's callback keys (`FERRY_CALLBACK_KEYS`). */
  keys: Keyring;
  /** Bound on the signal call when Temporal is slow or unreachable. */
  signalTimeoutMs?: number;
  /** The clock URLs expire by (tests move it). */
  now?: () => Date;
  logger?: CallbackServerLogger;
}

export interface CallbackServer {
  /** Base URL, e.g. `http://127.0.0.1:43123`; pass it to `callbackSigner(keys).callbackUrl`. */
  url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export async function startCallbackServer(opts: CallbackServerOptions): Promise<CallbackServer> {
  const signer = callbackSigner(opts.keys);
  const signalTimeoutMs = opts.signalTimeoutMs ?? 10_000;
  const logger: CallbackServerLogger = opts.logger ?? { warn: (m, meta) => console.warn(m, meta ?? '') };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://callback.invalid');
    if (url.pathname === '/healthz') {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'use GET');
      return send(res, 200, { status: 'ok' });
    }
    if (url.pathname !== CALLBACK_PATH) throw new HttpError(404, 'not found');
    if (req.method !== 'POST') throw new HttpError(405, 'use POST');

    // before the body is read: a forged or expired URL changes nothing
    const verdict = signer.verify(url.searchParams, opts.now?.() ?? new Date());
    if (!verdict.ok) throw new HttpError(verdict.status, verdict.message);
    const { target } = verdict;

    const body = CallbackBodySchema.safeParse(parseJson(await readBody(req)));
    if (!body.success) throw new HttpError(400, `invalid callback body: ${z.prettifyError(body.error)}`);

    const { ok, address, error } = body.data;
    const callback: ProvisionerCallback = {
      op: target.op,
      provisioner: target.provisioner,
      side: target.side,
      ...(target.round !== undefined ? { round: target.round } : {}),
      ok,
      ...(address ? { address } : {}),
      ...(error !== undefined ? { error } : {}),
    };
    try {
      await opts.client.withDeadline(Date.now() + signalTimeoutMs, () =>
        opts.client.workflow.getHandle(target.workflowId).signal(provisionerCallbackSignal, callback),
      );
    } catch (err) {
      if (err instanceof WorkflowNotFoundError || (err as Error)?.name === 'WorkflowNotFoundError') {
        throw new HttpError(404, `no running data flow ${target.workflowId}`);
      }
      // Ids only: the callback may carry credentials.
      logger.warn('provisioner callback could not be signalled', {
        workflowId: target.workflowId,
        op: target.op,
        provisioner: target.provisioner,
        error: (err as Error)?.message,
      });
      // 503 tells the service to retry later.
      throw new HttpError(503, 'could not deliver the callback now, retry later');
    }
    send(res, 202, { accepted: true });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (!(err instanceof HttpError)) logger.warn('callback server error', { error: (err as Error)?.message });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (status === 405) res.setHeader('allow', req.url?.startsWith('/healthz') ? 'GET, HEAD' : 'POST');
      // Closing after an early error answer stops a client still streaming an oversized body.
      if (status === 413) res.setHeader('connection', 'close');
      send(res, status, { error: err instanceof HttpError ? err.message : 'internal error' });
    });
  });
  // Bound slow or stuck clients.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      }),
  };
}

function parseTarget(params: URLSearchParams): CallbackTarget | undefined {
  const workflowId = params.get('wf');
  const op = params.get('op');
  const provisioner = params.get('p');
  const side = params.get('side');
  const round = params.get('round');
  const exp = params.get('exp');
  if (!workflowId || !provisioner) return undefined;
  if (op !== 'provision' && op !== 'deprovision') return undefined;
  if (side !== 'source' && side !== 'destination') return undefined;
  if (!exp || !/^\d{1,12}$/.test(exp)) return undefined;
  return { workflowId, op, provisioner, side, ...(round !== null ? { round } : {}), expiresAt: new Date(Number(exp) * 1000) };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'invalid callback body: not JSON');
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  const tooLarge = () => new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
        return;
      }
      // Stop buffering but keep the socket, so the 413 answer still reaches the client.
      req.off('data', onData);
      req.resume();
      reject(tooLarge());
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
    req.once('aborted', () => reject(new HttpError(400, 'request aborted')));
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
