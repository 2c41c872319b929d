import { createHash, type Hash } from 'node:crypto';
import { open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { property, type DataAddress } from '../../src/DataAddress.js';
import { CREATE_DIRECTORY, FileAddressError, resolveInRoot } from '../../src/FileAddress.js';
import { mkdirInside, realPathInside } from './confinement.js';

/**
 * File → File push inside one data-plane root. Bytes go to `<name>.part` and are renamed into place
 * only once complete and synced, so a consumer never sees a partial file under the final name, and an
 * interrupted copy can resume from the `.part` file.
 */

export interface CopyFileOptions {
  root: string;
  source: DataAddress;
  destination: DataAddress;
  /** Offset the previous attempt reported; honoured when the `.part` file has at least that many bytes. */
  resumeFrom?: number;
  /** Bandwidth cap; 0 or absent means unlimited. */
  rateLimitBytesPerSec?: number;
  signal?: AbortSignal;
  /** Bytes of the file that are in the `.part` file so far (including a resumed prefix). */
  onProgress?: (bytes: number) => void;
  progressEveryBytes?: number;
}

export interface CopyFileResult {
  bytes: number;
  /** Hex SHA-256 of the delivered bytes, verified against the destination file. */
  sha256: string;
  /** Absolute path of the delivered file. */
  file: string;
}

/** A transfer no retry can fix (bad address, missing source); the activity layer makes it non-retryable. */
export class TransferRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransferRejected';
  }
}

/** Thrown when `signal` aborts the copy; the `.part` file is left for a resume. `cause` is the signal's reason. */
export class TransferAborted extends Error {
  readonly bytes: number;
  constructor(bytes: number, reason: unknown) {
    super(`file transfer aborted after ${bytes} bytes`, { cause: reason });
    this.name = 'AbortError';
    this.bytes = bytes;
  }
}

const CHUNK_BYTES = 1024 * 1024;
const DEFAULT_PROGRESS_EVERY = 4 * 1024 * 1024;

export async function copyFile(opts: CopyFileOptions): Promise<CopyFileResult> {
  const { root, source, destination, signal } = opts;
  const resumeFrom = opts.resumeFrom ?? 0;
  const progressEvery = opts.progressEveryBytes ?? DEFAULT_PROGRESS_EVERY;
  const rate = opts.rateLimitBytesPerSec ?? 0;
  if (!Number.isSafeInteger(resumeFrom) || resumeFrom < 0) throw new RangeError('resumeFrom must be a non-negative integer');
  if (!(progressEvery > 0)) throw new RangeError('progressEveryBytes must be positive');
  if (!(rate >= 0) || !Number.isFinite(rate)) throw new RangeError('rateLimitBytesPerSec must be a non-negative number');
  if (source.endpointType !== 'File' || destination.endpointType !== 'File') {
    throw new TransferRejected(`copyFile moves File to File, got ${source.endpointType} to ${destination.endpointType}`);
  }
  if (signal?.aborted) throw new TransferAborted(0, signal.reason);

  const sourcePath = confine(root, source.endpoint);
  const destDir = confine(root, destination.endpoint);
  const name = property(destination, 'fileName') ?? path.basename(sourcePath);
  if (!isPlainFileName(name)) throw new TransferRejected(`destination file name ${JSON.stringify(name)} is not a plain file name`);

  const sourceStat = await statSource(sourcePath, source.endpoint);
  // Lexical confinement cannot see symlinks; the real paths can (checked before mkdir follows one).
  const escape = (endpoint: string) => new TransferRejected(`File endpoint ${JSON.stringify(endpoint)} leads outside the root through a symlink`);
  if (!(await realPathInside(root, sourcePath))) throw escape(source.endpoint);
  if (!sourceStat.isFile()) throw new TransferRejected(`source ${JSON.stringify(source.endpoint)} is not a regular file`);
  if (property(destination, CREATE_DIRECTORY) === 'false') {
    // provisioned: it exists until released, so a missing one was released (the transfer ended meanwhile)
    const dir = await stat(destDir).catch(() => undefined);
    if (!dir?.isDirectory()) throw new TransferRejected(`destination directory ${JSON.stringify(destination.endpoint)} is gone (released)`);
    if (!(await realPathInside(root, destDir))) throw escape(destination.endpoint);
  } else if (!(await mkdirInside(root, destDir))) throw escape(destination.endpoint);

  const finalPath = path.join(destDir, name);
  const partPath = `${finalPath}.part`;
  const limiter = rate > 0 ? new TokenBucket(rate) : undefined;
  const chunkBytes = limiter ? Math.min(CHUNK_BYTES, limiter.capacity) : CHUNK_BYTES;

  const src = await open(sourcePath, 'r');
  let position = 0;
  let hash: Hash;
  try {
    const resumed = resumeFrom > 0 ? await resumePart(partPath, src, resumeFrom, signal) : undefined;
    hash = resumed ?? createHash('sha256');
    position = resumed ? resumeFrom : 0;
    // 'r+' keeps the verified prefix; 'w' starts over.
    const out = await open(partPath, resumed ? 'r+' : 'w');
    try {
      const buffer = Buffer.allocUnsafe(chunkBytes);
      let reported = position;
      for (;;) {
        if (signal?.aborted) throw new TransferAborted(position, signal.reason);
        const { bytesRead } = await src.read(buffer, 0, chunkBytes, position);
        if (bytesRead === 0) break;
        const chunk = buffer.subarray(0, bytesRead);
        hash.update(chunk);
        await writeFully(out, chunk, position);
        position += bytesRead;
        if (opts.onProgress && position - reported >= progressEvery) {
          reported = position;
          opts.onProgress(position);
        }
        if (limiter) await limiter.take(bytesRead, signal, () => position);
      }
      // The file must be on disk before its name says it is complete.
      await out.truncate(position);
      await out.sync();
    } finally {
      await out.close();
    }
  } finally {
    await src.close();
  }

  const sha256 = hash.digest('hex');
  await rename(partPath, finalPath);
  await syncDirectory(destDir);
  opts.onProgress?.(position);

  const written = await sha256Of(finalPath, signal);
  if (written !== sha256) {
    // A corrupt delivery must not stay under the final name.
    await unlink(finalPath).catch(() => undefined);
    throw new Error(`destination ${JSON.stringify(name)} does not match the source: sha256 ${written} != ${sha256}`);
  }
  return { bytes: position, sha256, file: finalPath };
}

function confine(root: string, endpoint: string): string {
  try {
    return resolveInRoot(root, endpoint);
  } catch (err) {
    if (err instanceof FileAddressError) throw new TransferRejected(err.message);
    throw err;
  }
}

function isPlainFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);
}

async function statSource(sourcePath: string, endpoint: string) {
  try {
    return await stat(sourcePath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new TransferRejected(`source ${JSON.stringify(endpoint)} does not exist`);
    throw err;
  }
}

/**
 * Prepares a resume at `offset`: truncates the `.part` file there and returns the hash state of its
 * first `offset` bytes. The prefix is compared with the source as it is read, so a source that changed
 * (or a `.part` damaged by a crash) starts the copy over instead of producing a spliced file.
 * Returns undefined when the copy must start over.
 */
async function resumePart(partPath: string, src: FileHandle, offset: number, signal?: AbortSignal): Promise<Hash | undefined> {
  let part: FileHandle;
  try {
    part = await open(partPath, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await part.stat();
    if (size < offset || (await src.stat()).size < offset) return undefined;
    await part.truncate(offset);
    const hash = createHash('sha256');
    const a = Buffer.allocUnsafe(CHUNK_BYTES);
    const b = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let pos = 0; pos < offset; ) {
      if (signal?.aborted) throw new TransferAborted(0, signal.reason);
      const want = Math.min(CHUNK_BYTES, offset - pos);
      const [fromPart, fromSource] = await Promise.all([readFully(part, a, want, pos), readFully(src, b, want, pos)]);
      if (fromPart !== want || fromSource !== want || !a.subarray(0, want).equals(b.subarray(0, want))) return undefined;
      hash.update(a.subarray(0, want));
      pos += want;
    }
    return hash;
  } finally {
    await part.close();
  }
}

async function readFully(fh: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeFully(fh: FileHandle, chunk: Buffer, position: number): Promise<void> {
  for (let done = 0; done < chunk.length; ) {
    const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

async function sha256Of(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let pos = 0; ; ) {
      if (signal?.aborted) throw new TransferAborted(pos, signal.reason);
      const { bytesRead } = await fh.read(buffer, 0, CHUNK_BYTES, pos);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** Makes the rename durable; some platforms cannot fsync a directory, which is not worth failing for. */
async function syncDirectory(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Best effort.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/**
 * Token bucket holding at most a tenth of a second of traffic, so the rate is smooth and every wait
 * is short (an abort is noticed within ~100 ms).
 */
export class TokenBucket {
  readonly capacity: number;
  #tokens: number;
  #last = performance.now();

  constructor(readonly rate: number) {
    this.capacity = Math.max(1, Math.floor(rate / 10));
    this.#tokens = this.capacity;
  }

  async take(n: number, signal: AbortSignal | undefined, bytesSoFar: () => number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.#tokens = Math.min(this.capacity, this.#tokens + ((now - this.#last) / 1000) * this.rate);
      this.#last = now;
      if (this.#tokens >= n) {
        this.#tokens -= n;
        return;
      }
      const waitMs = Math.ceil(((n - this.#tokens) / this.rate) * 1000);
      try {
        await sleep(Math.min(waitMs, 1000), undefined, { signal });
      } catch {
        throw new TransferAborted(bytesSoFar(), signal?.reason);
      }
    }
  }

  /** Takes `n` bytes of any size: a chunk larger than the bucket goes in bucket-sized bites. */
  async takeBytes(n: number, signal: AbortSignal | undefined, bytesSoFar: () => number): Promise<void> {
    for (let left = n; left > 0; left -= this.capacity) await this.take(Math.min(left, this.capacity), signal, bytesSoFar);
  }
}
