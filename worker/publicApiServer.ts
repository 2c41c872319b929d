import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { headersOf } from '../activities/transfer/HttpTransfer.js';
import { realPathInside } from '../activities/transfer/confinement.js';
import { TokenBucket } from '../activities/transfer/TokenBucket.js';
import { EdrTokenInvalid, type EdrClaims, type EdrTokens, type TokenUse } from '../activities/pull/EdrTokens.js';
import { refreshUrlOf } from '../activities/provisioners/EdrProvisioner.js';
import { ClientAuthInvalid, verifyClientAssertion } from '../activities/dps/tokenRenewal.js';
import type { PullSessions } from '../activities/pull/PullSessions.js';
import { endpointUrl, type DataAddress } from '../src/DataAddress.js';
import { pullAccessQuery, type PullAccess } from '../src/DataFlow.js';
import { FileAddressError, resolveInRoot } from '../src/FileAddress.js';
import { trimSlash } from '../src/dsp.js';

/**
 * The data plane's public endpoint for HttpData-PULL: a consumer fetches the source of a started
 * flow with the EDR token it was given (`GET`), and renews that token with the EDR's refresh token
 * (`POST …/refresh`). Each request checks the token (signature, expiry: 401) and
 * then asks the flow's DataFlow workflow whether that token is still live (not STARTED any more, or
 * released by deprovisioning: 403). Bodies stream through with single byte ranges; nothing is
 * buffered whole.
 */
export interface PublicApiServer {
  url: string;
  close(): Promise<void>;
}

export interface PublicApiOptions {
  host: string;
  port: number;
  /** The path the endpoint is served at (that of the configured public URL); `/` by default. */
  basePath?: string;
  /** Whether the flow's tokens are live, and its source: the DataFlow's answer (`pullAccessFrom`); undefined when there is no such flow. */
  access(workflowId: string): Promise<PullAccess | undefined>;
  tokens: EdrTokens;
  /** Responses under way, so a revoked token's streams are cut. */
  sessions: PullSessions;
  /** File sources lie under this root. */
  fileRoot: string;
  /** Cap each response's bandwidth (bytes/s), as the data plane caps its pushes. */
  rateLimitBytesPerSec?: number;
  /**
   * The DPS Token Renewal profile (`grant_type=refresh_token` with a client JWT signed as the
   * consumer's did:web): the provider participant a flow's grant was issued by, when a DPS control
   * plane started it. Without it, only ferry's own renewal (the refresh token as bearer) is served.
   */
  renewal?: { participantOf(workflowId: string): Promise<string | undefined>; allowHttp: boolean };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const unauthorized = (why: string) => new HttpError(401, why, { 'www-authenticate': `Bearer error="invalid_token", error_description="${why}"` });

/** The access check of a real deployment: a query on the flow's DataFlow workflow. */
export const pullAccessFrom =
  (client: Client) =>
  async (workflowId: string): Promise<PullAccess | undefined> => {
    try {
      return await client.workflow.getHandle(workflowId).query(pullAccessQuery);
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) return undefined;
      throw e;
    }
  };

export async function startPublicApiServer(opts: PublicApiOptions): Promise<PublicApiServer> {
  const base = trimSlash(opts.basePath ?? '') || '/';
  const refreshPath = new URL(refreshUrlOf(`http://x${base}`)).pathname;

  /** The flow this request may read: a live token of a STARTED DataFlow. */
  const authorize = async (req: IncomingMessage, use: TokenUse = 'access'): Promise<{ source: DataAddress; claims: EdrClaims }> => {
    const header = req.headers.authorization ?? '';
    // EDC's consumers send the EDR token bare; others say "Bearer"
    return authorizeToken(header.replace(/^Bearer\s+/i, '').trim(), use);
  };
  const authorizeToken = async (token: string, use: TokenUse): Promise<{ source: DataAddress; claims: EdrClaims }> => {
    if (!token) throw unauthorized('missing token');
    let claims;
    try {
      claims = await opts.tokens.verify(token, use);
    } catch (e) {
      if (e instanceof EdrTokenInvalid) throw unauthorized(e.message);
      throw e;
    }
    let access: PullAccess | undefined;
    try {
      access = await opts.access(claims.workflowId);
    } catch {
      throw new HttpError(503, 'cannot check the token now');
    }
    if (!access) throw new HttpError(403, 'token revoked');
    if (access.state !== 'STARTED' || !access.liveTokenIds.includes(claims.tokenId)) throw new HttpError(403, 'token revoked');
    if (!access.source) throw new HttpError(503, 'the flow has no source');
    return { source: access.source, claims };
  };

  /** DPS Token Renewal: OAuth 2 refresh_token grant, the client authenticated by a JWT signed as its DID. */
  const dpsRenewal = async (req: IncomingMessage, form: URLSearchParams): Promise<{ claims: EdrClaims }> => {
    const oauth = (status: number, error: string, description: string) => new HttpError(status, `${error}: ${description}`);
    if (!opts.renewal) throw oauth(400, 'unsupported_grant_type', 'this data plane renews tokens with the refresh token as bearer');
    let claims: EdrClaims;
    try {
      ({ claims } = await authorizeToken(form.get('refresh_token') ?? '', 'refresh'));
    } catch (e) {
      if (e instanceof HttpError) throw oauth(400, 'invalid_grant', e.message);
      throw e;
    }
    const participant = await opts.renewal.participantOf(claims.workflowId);
    if (!participant) throw oauth(400, 'invalid_grant', 'this grant is not renewed with client authentication');
    const assertion = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '').trim();
    try {
      await verifyClientAssertion(assertion, { boundTo: claims.audience, audience: participant, tokenId: claims.tokenId }, { allowHttp: opts.renewal.allowHttp });
    } catch (e) {
      if (e instanceof ClientAuthInvalid) throw new HttpError(401, `invalid_client: ${e.message}`, { 'www-authenticate': 'Bearer error="invalid_client"' });
      throw e;
    }
    return { claims };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = trimSlash(new URL(req.url ?? '/', 'http://x').pathname) || '/';
    if (path === refreshPath) {
      if (req.method !== 'POST') throw new HttpError(405, 'method not allowed', { allow: 'POST' });
      // OAuth 2 parameters come in the query or a form body (DPS Token Renewal); ferry's own renewal sends none
      const form = new URLSearchParams(new URL(req.url ?? '/', 'http://x').search);
      if (/^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) for (const [k, v] of new URLSearchParams(await readSmallBody(req))) form.set(k, v);
      // a live refresh token buys a new pair under the same token id: a release still revokes both
      const { claims } = form.get('grant_type') === 'refresh_token' ? await dpsRenewal(req, form) : await authorize(req, 'refresh');
      const renewed = await opts.tokens.renew(claims);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(
        JSON.stringify({
          access_token: renewed.token,
          token_type: 'Bearer',
          expires_in: Math.round(opts.tokens.ttlMs / 1000),
          expiresAt: renewed.claims.expiresAt.toISOString(),
          refresh_token: renewed.refreshToken,
        }),
      );
      return;
    }
    if (path !== base) throw new HttpError(404, 'not found');
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'method not allowed', { allow: 'GET, HEAD' });
    const { source, claims } = await authorize(req);
    opts.sessions.track(claims.tokenId, res);
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const limit = opts.rateLimitBytesPerSec ? () => throttle(opts.rateLimitBytesPerSec!, abort.signal) : undefined;
    if (source.endpointType === 'File') return serveFile(opts.fileRoot, source, req, res, limit);
    if (source.endpointType === 'HttpData') return proxyHttp(source, req, res, abort.signal, limit);
    throw new HttpError(501, `cannot serve a ${source.endpointType} source`);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const err = e instanceof HttpError ? e : new HttpError(502, 'source unavailable');
      if (!(e instanceof HttpError)) console.error(`public API: ${(e as Error).message}`); // never the token
      if (res.headersSent) return void res.destroy();
      res.writeHead(err.status, { 'content-type': 'application/json', ...err.headers });
      res.end(JSON.stringify({ error: err.message }));
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}${base === '/' ? '' : base}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A request body of at most 16 KiB (an OAuth form), as text. */
async function readSmallBody(req: IncomingMessage): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 16 * 1024) throw new HttpError(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A single `bytes=` range of a body of `size` bytes; undefined to send it whole (none, several, or not bytes). */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined; // malformed: ignored, as RFC 9110 allows
  }
  return start >= size || start > end ? 'unsatisfiable' : { start, end };
}

/** Passes bytes on no faster than `rate` per second. */
function throttle(rate: number, signal: AbortSignal): Transform {
  const bucket = new TokenBucket(rate);
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bucket.takeBytes(chunk.length, signal, () => bytes).then(
        () => {
          bytes += chunk.length;
          done(null, chunk);
        },
        (e: Error) => done(e),
      );
    },
  });
}

type Limit = (() => Transform) | undefined;
const through = (limit: Limit): Transform[] => (limit ? [limit()] : []);

async function serveFile(root: string, source: DataAddress, req: IncomingMessage, res: ServerResponse, limit: Limit): Promise<void> {
  let file: string;
  try {
    file = resolveInRoot(root, source.endpoint);
  } catch (e) {
    if (e instanceof FileAddressError) throw new HttpError(500, 'the source address is invalid');
    throw e;
  }
  if (!(await realPathInside(root, file).catch(() => false))) throw new HttpError(404, 'source not found');
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw new HttpError(404, 'source not found');
  const range = parseRange(req.headers.range, info.size);
  if (range === 'unsatisfiable') throw new HttpError(416, 'range not satisfiable', { 'content-range': `bytes */${info.size}` });
  const headers: Record<string, string> = {
    'content-type': 'application/octet-stream',
    'accept-ranges': 'bytes',
    'last-modified': info.mtime.toUTCString(),
  };
  if (range) {
    res.writeHead(206, { ...headers, 'content-length': String(range.end - range.start + 1), 'content-range': `bytes ${range.start}-${range.end}/${info.size}` });
  } else {
    res.writeHead(200, { ...headers, 'content-length': String(info.size) });
  }
  if (req.method === 'HEAD' || info.size === 0) return void res.end();
  await pipeline([createReadStream(file, { ...(range ?? {}), highWaterMark: 256 * 1024 }), ...through(limit), res]).catch(() => res.destroy());
}

const PASSED_HEADERS = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag', 'last-modified'];

/** Streams an HTTP source through, passing a Range on and the source's status (200, 206, 416) back. */
async function proxyHttp(source: DataAddress, req: IncomingMessage, res: ServerResponse, signal: AbortSignal, limit: Limit): Promise<void> {
  const upstream = await fetch(endpointUrl(source), {
    method: req.method === 'HEAD' ? 'HEAD' : 'GET',
    // identity: lengths and ranges must be those of the bytes we pass on
    headers: { ...headersOf(source), 'accept-encoding': 'identity', ...(req.headers.range ? { range: req.headers.range } : {}) },
    redirect: 'error',
    signal,
  });
  if (!upstream.ok && upstream.status !== 416) {
    await upstream.arrayBuffer().catch(() => undefined);
    throw new HttpError(502, `source answered HTTP ${upstream.status}`);
  }
  const headers: Record<string, string> = {};
  for (const h of PASSED_HEADERS) {
    const v = upstream.headers.get(h);
    if (v) headers[h] = v;
  }
  res.writeHead(upstream.status, headers);
  if (!upstream.body || req.method === 'HEAD') return void res.end();
  await pipeline([Readable.fromWeb(upstream.body as import('node:stream/web').ReadableStream), ...through(limit), res]).catch(() => res.destroy());
}
