import { open, type FileHandle } from 'node:fs/promises';
import { endpointUrl, property, type DataAddress } from '../../src/DataAddress.js';
import { FileAddressError, resolveInRoot } from '../../src/FileAddress.js';
import { UrlPolicyError, type HttpPolicy } from '../../src/urlPolicy.js';
import { policyFetch } from '../net/policyFetch.js';
import { realPathInside } from './confinement.js';
import { abortable, TransferAborted, TransferRejected } from './errors.js';
import { sha256Worker, type Sha256 } from './Sha256Worker.js';
import { TokenBucket } from './TokenBucket.js';

/**
 * HttpData push: the provider's data plane streams the source (a File under its root, or an HTTP
 * endpoint) to the consumer's HTTP endpoint in constant memory, hashing and counting on the way.
 *
 * Address properties: `method` (destination, default POST), `authorization` (sent as the
 * Authorization header), `header:<Name>` (any other header), `contentType` (destination).
 *
 * Every push request names its flow and where its body starts in the flow's bytes:
 * `X-Ferry-Flow-Id: <flowId>` and `Upload-Offset: <n>` (0 for a whole body), so a sink always
 * knows a re-sent body for what it is. Resuming: on a retry, ferry first asks the sink with
 * `HEAD <endpoint>` (same headers); a sink that can resume answers 2xx with `Upload-Offset: N`,
 * the bytes of this flow it holds. Ferry then reads the source from the start (hashing the first
 * N bytes without sending them) and sends the rest with `Upload-Offset: N` and
 * `Content-Range: bytes N-(L-1)/L`; N equal to the length L means delivered: nothing is sent. Any
 * other answer, or a source of unknown length (a live stream), sends the whole body again from 0.
 */
export interface PushHttpOptions {
  root: string;
  flowId: string;
  source: DataAddress;
  destination: DataAddress;
  rateLimitBytesPerSec?: number;
  signal?: AbortSignal;
  /** Something may have been sent before (a retry): ask the sink how much it holds first. */
  probeResume?: boolean;
  /** Called as bytes go out (cheap; the activity's heartbeat timer sends the latest). */
  onProgress?: (progress: { offset: number; phase: 'probing' | 'sending' | 'done' }) => void;
  /**
   * Where requests may go (src/urlPolicy.ts): checked before any I/O and again on the addresses a
   * name resolves to; redirects are never followed. Absent: any address (callers that decide elsewhere).
   */
  destinationPolicy?: HttpPolicy;
  sourcePolicy?: HttpPolicy;
}

export interface PushHttpResult {
  bytes: number;
  sha256: string;
  /** The offset the sink said it held (0 for a whole body). */
  resumedFrom: number;
}

/** Header naming the flow a pushed body belongs to. */
export const FLOW_ID_HEADER = 'x-ferry-flow-id';
/** Header giving where a pushed body starts in the flow's bytes (and, answering HEAD, what a sink holds). */
export const UPLOAD_OFFSET_HEADER = 'upload-offset';

const CHUNK_BYTES = 1024 * 1024;

const ANY_NETWORK: HttpPolicy = { allowPrivateNetworks: true };

/** A request the URL policy refused (not allowed, resolves into a refused range, a redirect): final. */
export class NotAllowed extends TransferRejected {
  constructor(what: 'source' | 'destination', message: string) {
    super(message);
    this.name = what === 'source' ? 'SourceNotAllowed' : 'DestinationNotAllowed';
  }
}

/**
 * Every HTTP request of the data path goes through here: fetch under a policy, the transfer's abort
 * signal in `init`; a refusal, or headers no request can carry, is final: no retry changes it.
 */
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

export async function pushHttp(opts: PushHttpOptions): Promise<PushHttpResult> {
  const { destination, signal } = opts;
  if (destination.endpointType !== 'HttpData') throw new TransferRejected(`pushHttp needs an HttpData destination, got ${destination.endpointType}`);
  if (signal?.aborted) throw new TransferAborted(0, signal.reason);
  const flowHeaders = { ...headersOf(destination), [FLOW_ID_HEADER]: opts.flowId };
  const source = await openSource(opts.root, opts.source, signal, opts.sourcePolicy);
  const hash = sha256Worker();
  let sent = 0;
  try {
    let skip = 0;
    if (opts.probeResume && source.length !== undefined) {
      opts.onProgress?.({ offset: 0, phase: 'probing' });
      skip = await sinkOffset(endpointUrl(destination), flowHeaders, source.length, signal, opts.destinationPolicy);
    }
    const limiter = opts.rateLimitBytesPerSec ? new TokenBucket(opts.rateLimitBytesPerSec) : undefined;
    let read = 0;
    const at = () => skip + sent;
    if (skip > 0 && skip === source.length) {
      // the sink holds it all: a delivery whose completion was lost; hash it, send nothing
      for (let chunk = await source.next(); chunk; chunk = await source.next()) await hash.update(chunk);
      return await finish(opts, hash, source.length, skip);
    }
    // pulled only as the connection takes bytes (highWaterMark 0): when it asks for more, what it
    // was given before has gone out (fetch may take a first chunk before it even connects); the
    // next chunk is read ahead meanwhile
    let ahead: Promise<Uint8Array | undefined> | undefined;
    // hashing runs beside the sending; at most two chunks are being hashed at a time
    const hashing: Promise<void>[] = [];
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          opts.onProgress?.({ offset: skip + sent, phase: 'sending' });
          for (;;) {
            const chunk = await abortable(ahead ?? source.next(), signal, at);
            ahead = chunk ? source.next() : undefined;
            ahead?.catch(() => undefined);
            if (!chunk) return controller.close();
            const hashed = hash.update(chunk);
            hashed.catch(() => undefined); // awaited below; a push that fails first must not leave it unhandled
            hashing.push(hashed);
            if (hashing.length > 2) await hashing.shift();
            const from = read;
            read += chunk.length;
            if (read <= skip) continue; // held by the sink already
            const out = from < skip ? chunk.subarray(skip - from) : chunk;
            if (limiter) await limiter.takeBytes(out.length, signal, at);
            sent += out.length;
            controller.enqueue(out);
            return;
          }
        },
      },
      { highWaterMark: 0 },
    );
    const headers: Record<string, string> = {
      ...flowHeaders,
      'content-type': property(destination, 'contentType') ?? source.contentType ?? 'application/octet-stream',
      [UPLOAD_OFFSET_HEADER]: String(skip),
    };
    if (skip > 0) headers['content-range'] = `bytes ${skip}-${source.length! - 1}/${source.length}`;
    opts.onProgress?.({ offset: skip, phase: 'sending' });
    let res: Awaited<ReturnType<typeof fetchUnder>>;
    try {
      res = await fetchUnder('destination', endpointUrl(destination), { method: property(destination, 'method') ?? 'POST', headers, body, duplex: 'half', ...(signal ? { signal } : {}) }, opts.destinationPolicy);
      await res.arrayBuffer().catch(() => undefined);
    } catch (e) {
      if (signal?.aborted) throw new TransferAborted(at(), signal.reason);
      throw e;
    }
    if (!res.ok) throw httpFailure('destination', destination.endpoint, res.status, skip > 0);
    if (source.length !== undefined && read !== source.length) throw new Error(`source ended after ${read} of ${source.length} bytes`);
    await Promise.all(hashing);
    return await finish(opts, hash, read, skip);
  } finally {
    hash.dispose();
    await source.close();
  }
}

async function finish(opts: PushHttpOptions, hash: Sha256, bytes: number, resumedFrom: number): Promise<PushHttpResult> {
  const sha256 = await hash.digest();
  opts.onProgress?.({ offset: bytes, phase: 'done' });
  return { bytes, sha256, resumedFrom };
}

/** How many bytes of this flow the sink holds, when it says (HEAD → `Upload-Offset`); 0 otherwise. */
async function sinkOffset(endpoint: string, headers: Record<string, string>, length: number, signal: AbortSignal | undefined, policy: HttpPolicy | undefined): Promise<number> {
  let res: Awaited<ReturnType<typeof fetchUnder>>;
  try {
    res = await fetchUnder('destination', endpoint, { method: 'HEAD', headers, ...(signal ? { signal } : {}) }, policy);
    await res.arrayBuffer().catch(() => undefined);
  } catch (e) {
    if (signal?.aborted) throw new TransferAborted(0, signal.reason);
    throw e;
  }
  const raw = res.headers.get(UPLOAD_OFFSET_HEADER);
  if (!res.ok || raw === null || !/^\d{1,15}$/.test(raw.trim())) return 0;
  const offset = Number(raw.trim());
  // a sink that claims more than there is has another upload in mind: start over
  return offset <= length ? offset : 0;
}

interface OpenedSource {
  /** The next chunk, or undefined at the end. */
  next(): Promise<Uint8Array | undefined>;
  close(): Promise<void>;
  contentType?: string;
  length?: number;
}

async function openSource(root: string, source: DataAddress, signal: AbortSignal | undefined, policy: HttpPolicy | undefined): Promise<OpenedSource> {
  if (source.endpointType === 'File') {
    let file: string;
    try {
      file = resolveInRoot(root, source.endpoint);
    } catch (e) {
      if (e instanceof FileAddressError) throw new TransferRejected(e.message);
      throw e;
    }
    if (!(await realPathInside(root, file).catch(() => false))) throw new TransferRejected(`source ${JSON.stringify(source.endpoint)} leads outside the root or does not exist`);
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TransferRejected(`source ${JSON.stringify(source.endpoint)} does not exist`);
      throw e;
    }
    const info = await fh.stat();
    if (!info.isFile()) {
      await fh.close();
      throw new TransferRejected(`source ${JSON.stringify(source.endpoint)} is not a regular file`);
    }
    let position = 0;
    return {
      length: info.size,
      async next() {
        // a fresh buffer each time: the previous one may still be on its way out
        const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
        const { bytesRead } = await fh.read(buffer, 0, CHUNK_BYTES, position);
        position += bytesRead;
        return bytesRead ? buffer.subarray(0, bytesRead) : undefined;
      },
      close: () => fh.close(),
    };
  }
  let res: Awaited<ReturnType<typeof fetchUnder>>;
  try {
    // identity: the length and the bytes are those the source sends
    res = await fetchUnder('source', endpointUrl(source), { headers: { ...headersOf(source), 'accept-encoding': 'identity' }, ...(signal ? { signal } : {}) }, policy);
  } catch (e) {
    if (signal?.aborted) throw new TransferAborted(0, signal.reason);
    throw e;
  }
  if (!res.ok || !res.body) {
    await res.arrayBuffer().catch(() => undefined);
    throw httpFailure('source', source.endpoint, res.status, false);
  }
  const length = Number(res.headers.get('content-length') ?? NaN);
  const reader = res.body.getReader();
  return {
    ...(res.headers.get('content-type') ? { contentType: res.headers.get('content-type')! } : {}),
    ...(Number.isSafeInteger(length) ? { length } : {}),
    async next() {
      const { value, done } = await reader.read();
      return done ? undefined : value;
    },
    close: () => reader.cancel().catch(() => undefined),
  };
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

/** 4xx (but timeouts, throttling, and a resumed body the sink no longer agrees with) will not get better by retrying. */
function httpFailure(side: string, endpoint: string, status: number, resumed: boolean): Error {
  const where = new URL(endpoint);
  const message = `${side} ${where.origin}${where.pathname} answered HTTP ${status}`;
  const retryable = status === 408 || status === 429 || (resumed && (status === 409 || status === 416));
  return status >= 400 && status < 500 && !retryable ? new TransferRejected(message) : new Error(message);
}
