import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, open, readdir, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { property, type DataAddress } from '../../src/DataAddress.js';
import { CREATE_DIRECTORY, FileAddressError, resolveInRoot } from '../../src/FileAddress.js';
import { realPathInside } from './confinement.js';
import { abortable, AttemptSuperseded, TransferAborted, TransferRejected } from './errors.js';
import {
  CREATE_EXCLUSIVE,
  DestinationRefused,
  DONE_RECORD,
  flowDirectory,
  readJsonNoFollow,
  removeEntry,
  renameNoReplace,
  syncDirectory,
  writeExclusive,
} from './FlowDirectory.js';
import { sha256Worker, type Sha256 } from './Sha256Worker.js';
import { TokenBucket } from './TokenBucket.js';

export { AttemptSuperseded, TransferAborted, TransferRejected } from './errors.js';
export { TokenBucket } from './TokenBucket.js';

/**
 * File → File push inside one data-plane root, into a directory of the flow's own (FlowDirectory).
 *
 * The bytes are hashed (sha256) as they are read from the source and written to this attempt's
 * `<name>.<attempt>.part`, then fsynced, recorded in `.ferry-done` and linked under the final name
 * (never replacing a file). "Verified" means: every byte of the delivered file was hashed as it was
 * read from the source and written with a full positional write, the file was fsynced before it got
 * its name, its size equals the source's, and the source did not change (size, mtime, inode) while
 * it was read. A resumed copy compares the kept prefix byte for byte with the source first. The
 * written file is not read back: a read-back would come from the page cache and prove nothing the
 * write did not.
 *
 * One attempt at a time: a new attempt takes the previous `.part` over by a no-replace rename; the
 * old attempt finds its path gone at its next check (every 250 ms and before it finishes) and stops
 * (AttemptSuperseded), and it can never link a file that is no longer at its path.
 */

export interface FileProgress {
  /** Bytes in this attempt's `.part` that match the source: where a retry can resume. */
  offset: number;
  /** The attempt whose `.part` holds them. */
  part: string;
  phase: 'preparing' | 'verifying-resume' | 'copying' | 'syncing' | 'done';
}

export interface CopyFileOptions {
  root: string;
  /** The flow this copy belongs to: names the flow directory the transfer makes, and marks it. */
  flowId: string;
  source: DataAddress;
  destination: DataAddress;
  /** Tag of this attempt (letters, digits, "_" and "-"), unique per attempt: names its `.part`. Random by default. */
  attempt?: string;
  /**
   * The attempt whose `.part` to resume (from its heartbeat). Without it the largest `.part` of this
   * file in the flow directory is taken (a run after a suspension). Either way only the longest
   * prefix that matches the source byte for byte is kept.
   */
  resume?: { part?: string };
  /** Bandwidth cap; 0 or absent means unlimited. */
  rateLimitBytesPerSec?: number;
  signal?: AbortSignal;
  /** Called as the copy advances; cheap (the activity's heartbeat timer sends the latest). */
  onProgress?: (progress: FileProgress) => void;
}

export interface CopyFileResult {
  bytes: number;
  /** Hex SHA-256 of the delivered bytes, as read from the source and written. */
  sha256: string;
  /** Absolute path of the delivered file. */
  file: string;
  /** Where this attempt started (0, or a verified resume offset). */
  resumedFrom: number;
  /** True when an earlier attempt had already delivered and recorded the file: nothing was copied. */
  alreadyDelivered: boolean;
}

/** The source changed while it was read: the bytes copied so far are worth nothing. */
export class SourceChanged extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SourceChanged';
  }
}

const CHUNK_BYTES = 4 * 1024 * 1024;
/** How much written data may wait before a background fdatasync starts. */
const WRITE_BACK_BYTES = 64 * 1024 * 1024;
const LEASE_CHECK_MS = 250;
const TAG = /^[A-Za-z0-9_-]{1,64}$/;

export const partFileName = (name: string, tag: string): string => `${name}.${tag}.part`;

export async function copyFile(opts: CopyFileOptions): Promise<CopyFileResult> {
  const { root, source, destination, signal, flowId } = opts;
  const rate = opts.rateLimitBytesPerSec ?? 0;
  const tag = opts.attempt ?? randomBytes(6).toString('hex');
  const hint = opts.resume?.part;
  if (!TAG.test(tag) || (hint !== undefined && !TAG.test(hint))) throw new RangeError('attempt tags use 1-64 letters, digits, "_" and "-"');
  if (!(rate >= 0) || !Number.isFinite(rate)) throw new RangeError('rateLimitBytesPerSec must be a non-negative number');
  if (source.endpointType !== 'File' || destination.endpointType !== 'File') {
    throw new TransferRejected(`copyFile moves File to File, got ${source.endpointType} to ${destination.endpointType}`);
  }
  if (signal?.aborted) throw new TransferAborted(0, signal.reason);
  const report = (offset: number, phase: FileProgress['phase']) => opts.onProgress?.({ offset, part: tag, phase });
  report(0, 'preparing');

  const sourcePath = confine(root, source.endpoint);
  const base = confine(root, destination.endpoint);
  const name = property(destination, 'fileName') ?? path.basename(sourcePath);
  if (!isPlainFileName(name)) throw new TransferRejected(`destination file name ${JSON.stringify(name)} is not a plain file name`);
  if (name.startsWith('.ferry-') || name.endsWith('.part') || Buffer.byteLength(name) > 180) {
    throw new TransferRejected(`destination file name ${JSON.stringify(name)} is reserved or too long (.ferry-*, *.part, over 180 bytes)`);
  }
  if (!(await realPathInside(root, sourcePath).catch(() => false))) {
    throw new TransferRejected(`File endpoint ${JSON.stringify(source.endpoint)} leads outside the root through a symlink, or does not exist`);
  }
  const provisioned = property(destination, CREATE_DIRECTORY) === 'false';
  const dir = await refusing(() => flowDirectory(root, base, flowId, provisioned, destination.endpoint));
  const finalPath = path.join(dir, name);

  const earlier = await refusing(() => deliveredBefore(dir, name, flowId));
  if (earlier) {
    report(earlier.bytes, 'done');
    return earlier;
  }
  if (await lstat(finalPath).then(() => true, () => false)) {
    throw new TransferRejected(`destination file ${JSON.stringify(name)} already exists in ${JSON.stringify(destination.endpoint)}; a push never replaces a file`);
  }

  const src = await openSource(sourcePath, source.endpoint);
  let out: FileHandle | undefined;
  let hash: Sha256 | undefined;
  let aborted = false;
  try {
    const before = await src.stat();
    if (!before.isFile()) throw new TransferRejected(`source ${JSON.stringify(source.endpoint)} is not a regular file`);
    const mine = path.join(dir, partFileName(name, tag));
    // one earlier attempt's part may be taken over; leftovers of any other attempt go
    const previous = await resumablePart(dir, name, tag, hint);
    await revokeParts(dir, name, previous);

    let start = 0;
    hash = sha256Worker();
    if (previous && (await renameNoReplace(previous, mine))) {
      out = await openOwnPart(mine);
      if (out) {
        report(0, 'verifying-resume');
        start = await matchingPrefix(out, src, before.size, hash, signal, (n) => report(n, 'verifying-resume'));
        await out.truncate(start);
      }
    }
    out ??= await createPart(mine);
    const lease = new Lease(mine, await out.stat());
    report(start, 'copying');

    const limiter = rate > 0 ? new TokenBucket(rate) : undefined;
    const end = await pump({ src, out, from: start, hash, limiter, signal, lease, onBytes: (pos) => report(pos, 'copying') });
    const after = await src.stat();
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || after.ino !== before.ino || end !== after.size) {
      throw new SourceChanged(`source ${JSON.stringify(source.endpoint)} changed while it was copied (${end} bytes read, ${after.size} now)`);
    }
    report(end, 'syncing');
    // the file must be on disk before its name says it is complete
    await abortable(out.sync(), signal, () => end);
    await lease.check(true);
    const sha256 = await hash.digest();
    hash = undefined;
    const { dev, ino } = lease.identity;
    const record = { flowId, file: name, bytes: end, sha256, tag, dev, ino };
    if (!(await writeExclusive(path.join(dir, DONE_RECORD), `${JSON.stringify(record)}\n`))) {
      // another attempt of this flow got there first; if it left a usable delivery, that is the copy
      await removeEntry(mine);
      const other = await refusing(() => deliveredBefore(dir, name, flowId));
      if (other) return other;
      throw new Error(`flow ${flowId}: a concurrent attempt's completion record is unusable; retrying`);
    }
    try {
      await link(mine, finalPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new AttemptSuperseded(`attempt ${tag} of flow ${flowId} was taken over before it finished`);
      if (code === 'EEXIST') {
        await unlink(path.join(dir, DONE_RECORD)).catch(() => undefined);
        throw new TransferRejected(`destination file ${JSON.stringify(name)} appeared while flow ${flowId} copied it; a push never replaces a file`);
      }
      throw e;
    }
    await removeEntry(mine);
    await syncDirectory(dir);
    report(end, 'done');
    return { bytes: end, sha256, file: finalPath, resumedFrom: start, alreadyDelivered: false };
  } catch (e) {
    aborted = e instanceof TransferAborted;
    throw e;
  } finally {
    hash?.dispose();
    // an aborted read or write may still be running: closing would wait for it, so let it go
    const closing = Promise.all([out?.close(), src.close()]).catch(() => undefined);
    if (!aborted) await closing;
  }
}

/**
 * The copy an earlier attempt of this flow finished and recorded. Its part is linked under the
 * final name if it died just before doing so. A record whose file is gone (removed after delivery)
 * is stale and removed: the flow copies again.
 */
async function deliveredBefore(dir: string, name: string, flowId: string): Promise<CopyFileResult | undefined> {
  const recordPath = path.join(dir, DONE_RECORD);
  const rec = await readJsonNoFollow(recordPath);
  if (!rec) return undefined;
  const { file, bytes, sha256, tag, dev, ino } = rec as { file?: unknown; bytes?: unknown; sha256?: unknown; tag?: unknown; dev?: unknown; ino?: unknown };
  if (rec.flowId !== flowId) throw new DestinationRefused(`${recordPath} records another flow's delivery`);
  if (file !== name) throw new DestinationRefused(`flow ${flowId} already delivered ${JSON.stringify(file)} into ${dir}`);
  if (typeof bytes !== 'number' || typeof sha256 !== 'string' || typeof tag !== 'string' || !TAG.test(tag) || typeof ino !== 'number' || typeof dev !== 'number') {
    throw new DestinationRefused(`${recordPath} is not a ferry record`);
  }
  const result: CopyFileResult = { bytes, sha256, file: path.join(dir, name), resumedFrom: bytes, alreadyDelivered: true };
  const same = (st: { dev: number; ino: number; size: number }) => st.dev === dev && st.ino === ino && st.size === bytes;
  const final = await lstat(result.file).catch(() => undefined);
  if (final) {
    if (final.isFile() && same(final)) return result;
    throw new DestinationRefused(`destination file ${JSON.stringify(name)} is not the file flow ${flowId} delivered`);
  }
  // recorded but not linked yet: the recording attempt's complete, synced part is the delivery
  const part = path.join(dir, partFileName(name, tag));
  const st = await lstat(part).catch(() => undefined);
  if (st?.isFile() && same(st) && st.nlink === 1) {
    try {
      await link(part, result.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      return deliveredBefore(dir, name, flowId);
    }
    await removeEntry(part);
    await syncDirectory(dir);
    return result;
  }
  await removeEntry(recordPath);
  return undefined;
}

/** The `.part` entries of `name` in `dir`, of any attempt (and the unnamed one of earlier versions). */
async function partsOf(dir: string, name: string): Promise<string[]> {
  const prefix = `${name}.`;
  return (await readdir(dir))
    .filter((entry) => {
      if (!entry.startsWith(prefix) || !entry.endsWith('.part')) return false;
      const middle = entry.slice(prefix.length, -'.part'.length);
      return middle === '' || TAG.test(middle);
    })
    .map((entry) => path.join(dir, entry));
}

/** Removes the parts of `name` of every attempt but `keep` (orphans, or a superseded attempt's: it then stops). */
async function revokeParts(dir: string, name: string, keep: string | undefined): Promise<void> {
  for (const file of await partsOf(dir, name)) if (file !== keep) await removeEntry(file);
}

/** Opens a taken-over part for writing: never through a symlink, never a file linked elsewhere too. */
async function openOwnPart(file: string): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDWR | (constants.O_NOFOLLOW ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOENT' || code === 'EISDIR') {
      await removeEntry(file);
      return undefined;
    }
    throw e;
  }
  const st = await fh.stat();
  if (!st.isFile() || st.nlink !== 1) {
    await fh.close();
    await removeEntry(file);
    return undefined;
  }
  return fh;
}

/** This attempt's part, made fresh; a planted entry under its name is removed (never followed) first. */
async function createPart(file: string): Promise<FileHandle> {
  for (let i = 0; ; i++) {
    try {
      return await open(file, CREATE_EXCLUSIVE | constants.O_RDWR, 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i > 0) throw e;
      await removeEntry(file);
    }
  }
}

async function openSource(sourcePath: string, endpoint: string): Promise<FileHandle> {
  try {
    return await open(sourcePath, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new TransferRejected(`source ${JSON.stringify(endpoint)} does not exist`);
    if (code === 'EISDIR') throw new TransferRejected(`source ${JSON.stringify(endpoint)} is not a regular file`);
    throw err;
  }
}

/** Who holds the part: this attempt while the path still names the file it writes. */
class Lease {
  #last = performance.now();
  readonly identity: { dev: number; ino: number };
  constructor(
    readonly file: string,
    st: { dev: number; ino: number },
  ) {
    this.identity = { dev: st.dev, ino: st.ino };
  }

  async check(force = false): Promise<void> {
    const now = performance.now();
    if (!force && now - this.#last < LEASE_CHECK_MS) return;
    this.#last = now;
    const st = await lstat(this.file).catch(() => undefined);
    if (!st || st.dev !== this.identity.dev || st.ino !== this.identity.ino) {
      throw new AttemptSuperseded(`${path.basename(this.file)} was taken over by a newer attempt`);
    }
  }
}

/**
 * Copies from `from` to the end of the source: two buffers, so the next read, this chunk's write
 * and its hash run at once (reads and writes on libuv's threads, the hash on a hash thread).
 */
async function pump(p: {
  src: FileHandle;
  out: FileHandle;
  from: number;
  hash: Sha256;
  limiter: TokenBucket | undefined;
  signal: AbortSignal | undefined;
  lease: Lease;
  onBytes: (pos: number) => void;
}): Promise<number> {
  const chunk = p.limiter ? Math.max(1, Math.min(CHUNK_BYTES, p.limiter.capacity)) : CHUNK_BYTES;
  let a = Buffer.allocUnsafeSlow(chunk);
  let b = Buffer.allocUnsafeSlow(chunk);
  let pos = p.from;
  const at = () => pos;
  let n = (await abortable(p.src.read(a, 0, chunk, pos), p.signal, at)).bytesRead;
  // write back as we go (one fdatasync at a time, not waited for), so the disk works while the
  // copy hashes and the fsync at the end has little left to do
  let syncing: Promise<void> | undefined;
  let syncedTo = pos;
  while (n > 0) {
    if (!syncing && pos - syncedTo >= WRITE_BACK_BYTES) {
      syncedTo = pos;
      syncing = p.out.datasync().finally(() => (syncing = undefined));
      syncing.catch(() => undefined); // the final fsync reports what went wrong
    }
    const current = a.subarray(0, n);
    const next = p.src.read(b, 0, chunk, pos + n);
    const written = writeFully(p.out, current, pos);
    const hashed = p.hash.update(current);
    const [read] = await abortable(Promise.all([next, written, hashed]), p.signal, at);
    pos += n;
    p.onBytes(pos);
    await p.lease.check();
    if (p.limiter) await p.limiter.takeBytes(n, p.signal, at);
    n = read.bytesRead;
    [a, b] = [b, a];
  }
  await syncing?.catch(() => undefined);
  return pos;
}

/**
 * The longest prefix of a kept part that matches the source byte for byte (up to the source's
 * size), hashed into `hash`. A changed source or a part damaged by a crash keeps
 * only what still matches: the copy never splices two versions.
 */
async function matchingPrefix(
  part: FileHandle,
  src: FileHandle,
  sourceSize: number,
  hash: Sha256,
  signal: AbortSignal | undefined,
  onVerified: (bytes: number) => void,
): Promise<number> {
  const limit = Math.min((await part.stat()).size, sourceSize);
  const a = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  const b = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  let pos = 0;
  while (pos < limit) {
    const want = Math.min(CHUNK_BYTES, limit - pos);
    const [fromPart, fromSource] = await abortable(Promise.all([readFully(part, a, want, pos), readFully(src, b, want, pos)]), signal, () => pos);
    const same = commonPrefix(a.subarray(0, fromPart), b.subarray(0, fromSource));
    await hash.update(a.subarray(0, same));
    pos += same;
    onVerified(pos);
    if (same !== want) break;
  }
  return pos;
}

/** Length of the common prefix of two buffers (a binary search of native compares). */
export function commonPrefix(a: Buffer, b: Buffer): number {
  let lo = 0;
  let hi = Math.min(a.length, b.length);
  if (a.subarray(0, hi).equals(b.subarray(0, hi))) return hi;
  // invariant: the first lo bytes match, the first hi do not
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (a.subarray(lo, mid).equals(b.subarray(lo, mid))) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The part a new attempt resumes: the hinted one if it is there, else the largest of this file's parts. */
async function resumablePart(dir: string, name: string, tag: string, hint: string | undefined): Promise<string | undefined> {
  let best: { file: string; size: number } | undefined;
  for (const file of await partsOf(dir, name)) {
    if (file === path.join(dir, partFileName(name, tag))) continue;
    const st = await lstat(file).catch(() => undefined);
    if (!st?.isFile() || st.nlink !== 1) continue;
    if (hint && file === path.join(dir, partFileName(name, hint))) return file;
    if (!best || st.size > best.size) best = { file, size: st.size };
  }
  return best?.file;
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

function confine(root: string, endpoint: string): string {
  try {
    return resolveInRoot(root, endpoint);
  } catch (err) {
    if (err instanceof FileAddressError) throw new TransferRejected(err.message);
    throw err;
  }
}

async function refusing<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof DestinationRefused) throw new TransferRejected(e.message);
    throw e;
  }
}

function isPlainFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);
}
