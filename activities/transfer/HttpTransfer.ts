import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { endpointUrl, property, type DataAddress } from '../../src/DataAddress.js';
import { FileAddressError, resolveInRoot } from '../../src/FileAddress.js';
import { UrlPolicyError, type HttpPolicy } from '../../src/urlPolicy.js';
import { policyFetch } from '../net/policyFetch.js';
import { realPathInside } from './confinement.js';
import { TokenBucket, TransferAborted, TransferRejected } from './FileTransfer.js';

/**
 * HttpData push: the provider's data plane streams the source (a File under its root, or an
 * HTTP endpoint) to the consumer's HTTP endpoint. Bytes flow through in chunks (constant memory),
 * hashed and counted on the way. An HTTP body cannot be resumed, so a retry starts over.
 *
 * Address properties: `method` (destination, default POST), `authorization` (sent as the
 * Authorization header), `header:<Name>` (any other header), `contentType` (destination).
 */
export interface PushHttpOptions {
  root: string;
  source: DataAddress;
  destination: DataAddress;
  rateLimitBytesPerSec?: number;
  signal?: AbortSignal;
  onProgress?: (bytes: number) => void;
  progressEveryBytes?: number;
  /**
   * Where requests may go (src/urlPolicy.ts): checked before any I/O and again on the addresses a
   * name resolves to; redirects are never followed. Absent: any address (callers that decide elsewhere).
   */
  destinationPolicy?: HttpPolicy;
  sourcePolicy?: HttpPolicy;
}

const ANY_NETWORK: HttpPolicy = { allowPrivateNetworks: true };

/** A request the URL policy refused (not allowed, resolves into a refused range, a redirect): final. */
export class NotAllowed extends TransferRejected {
  constructor(what: 'source' | 'destination', message: string) {
    super(message);
    this.name = what === 'source' ? 'SourceNotAllowed' : 'DestinationNotAllowed';
  }
}

/** fetch under a policy; a refusal, or headers no request can carry, is final: no retry changes it. */
async function fetchUnder(what: 'source' | 'destination', url: string, init: Parameters<typeof policyFetch>[1], policy: HttpPolicy | undefined) {
  const headers = Object.entries((init.headers ?? {}) as Record<string, string>);
  // RFC 9110 field names (tokens) and values (visible characters, spaces, tabs); the value may be a credential: not in the message
  if (headers.some(([name, value]) => !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || !/^[\t\x20-\x7E\x80-\xFF]*$/.test(value))) {
    throw new TransferRejected(`${what} address has an invalid header name or value`);
  }
  try {
    return await policyFetch(url, init, policy ?? ANY_NETWORK, { what });
  } catch (e) {
    if (e instanceof UrlPolicyError) throw new NotAllowed(what, e.message);
    throw e;
  }
}

const DEFAULT_PROGRESS_EVERY = 4 * 1024 * 1024;

export async function pushHttp(opts: PushHttpOptions): Promise<{ bytes: number; sha256: string }> {
  const { destination, signal } = opts;
  if (destination.endpointType !== 'HttpData') throw new TransferRejected(`pushHttp needs an HttpData destination, got ${destination.endpointType}`);
  const source = await openSource(opts.root, opts.source, signal, opts.sourcePolicy);
  const hash = createHash('sha256');
  const limiter = opts.rateLimitBytesPerSec ? new TokenBucket(opts.rateLimitBytesPerSec) : undefined;
  const every = opts.progressEveryBytes ?? DEFAULT_PROGRESS_EVERY;
  let bytes = 0;
  let reported = 0;
  const counted = source.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      async transform(chunk, controller) {
        if (signal?.aborted) throw new TransferAborted(bytes, signal.reason);
        hash.update(chunk);
        bytes += chunk.byteLength;
        if (opts.onProgress && bytes - reported >= every) {
          reported = bytes;
          opts.onProgress(bytes);
        }
        await limiter?.takeBytes(chunk.byteLength, signal, () => bytes);
        controller.enqueue(chunk);
      },
    }),
  );
  let res: Awaited<ReturnType<typeof fetchUnder>>;
  try {
    res = await fetchUnder('destination', endpointUrl(destination), {
      method: property(destination, 'method') ?? 'POST',
      headers: {
        ...headersOf(destination),
        'content-type': property(destination, 'contentType') ?? source.contentType ?? 'application/octet-stream',
      },
      body: counted,
      duplex: 'half',
      ...(signal ? { signal } : {}),
    }, opts.destinationPolicy);
  } catch (e) {
    if (signal?.aborted) throw new TransferAborted(bytes, signal.reason);
    throw e;
  }
  await res.arrayBuffer().catch(() => undefined);
  if (!res.ok) throw httpFailure('destination', destination.endpoint, res.status);
  if (source.length !== undefined && bytes !== source.length) throw new Error(`source ended after ${bytes} of ${source.length} bytes`);
  opts.onProgress?.(bytes);
  return { bytes, sha256: hash.digest('hex') };
}

async function openSource(root: string, source: DataAddress, signal?: AbortSignal, policy?: HttpPolicy): Promise<{ body: ReadableStream<Uint8Array>; contentType?: string; length?: number }> {
  if (source.endpointType === 'File') {
    let file: string;
    try {
      file = resolveInRoot(root, source.endpoint);
    } catch (e) {
      if (e instanceof FileAddressError) throw new TransferRejected(e.message);
      throw e;
    }
    if (!(await realPathInside(root, file))) throw new TransferRejected(`source ${JSON.stringify(source.endpoint)} leads outside the root`);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) throw new TransferRejected(`source ${JSON.stringify(source.endpoint)} is not a regular file`);
    return { body: Readable.toWeb(createReadStream(file, { highWaterMark: 1024 * 1024 })) as ReadableStream<Uint8Array>, length: info.size };
  }
  const res = await fetchUnder('source', endpointUrl(source), { headers: headersOf(source), ...(signal ? { signal } : {}) }, policy);
  if (!res.ok || !res.body) {
    await res.arrayBuffer().catch(() => undefined);
    throw httpFailure('source', source.endpoint, res.status);
  }
  const length = Number(res.headers.get('content-length') ?? NaN);
  return { body: res.body as ReadableStream<Uint8Array>, ...(res.headers.get('content-type') ? { contentType: res.headers.get('content-type')! } : {}), ...(Number.isFinite(length) ? { length } : {}) };
}

/** The request headers an address asks for. Values may be credentials: never log them. */
export function headersOf(address: DataAddress): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const { name, value } of address.endpointProperties) {
    if (name === 'authorization') headers.authorization = value;
    else if (name.startsWith('header:')) headers[name.slice('header:'.length)] = value;
  }
  return headers;
}

/** 4xx (but timeouts and throttling) will not get better by retrying. */
function httpFailure(side: string, endpoint: string, status: number): Error {
  const where = new URL(endpoint);
  const message = `${side} ${where.origin}${where.pathname} answered HTTP ${status}`;
  return status >= 400 && status < 500 && status !== 408 && status !== 429 ? new TransferRejected(message) : new Error(message);
}
