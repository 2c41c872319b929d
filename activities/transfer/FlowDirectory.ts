import { constants } from 'node:fs';
import { link, lstat, mkdir, open, readdir, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { realPathInside } from './confinement.js';

/**
 * The directory a File push delivers into belongs to one flow. Either a provisioner made it
 * (`createDirectory: false`, e.g. the file-destination provisioner's `<dest>/<flowId>`) or the
 * transfer makes `<dest>/<flowId>` itself, exclusively. Either way it holds a marker file naming the
 * flow, so nobody can point a push at a directory that was not made for a flow (an asset
 * directory, another tenant's inbox), and a retry recognises its own directory.
 *
 * Inside it everything is created with O_EXCL and opened with O_NOFOLLOW: a planted symlink or an
 * existing file is never written through or over.
 *
 *   .ferry-flow           {"flowId"}: whose directory this is (created O_EXCL)
 *   <name>.<attempt>.part the bytes of one transfer attempt (O_CREAT|O_EXCL|O_NOFOLLOW); the next
 *                         attempt takes it over by a no-replace rename, so the old attempt's path is
 *                         gone and it stops (see FileTransfer)
 *   .ferry-done           {"flowId","file","bytes","sha256","dev","ino"}: this flow's verified copy,
 *                         written (O_EXCL, fsynced) before the part is linked to its final name
 *   <name>                the delivered file: link(part, name), which never replaces an existing file
 */

export const FLOW_MARKER = '.ferry-flow';
export const DONE_RECORD = '.ferry-done';

/** A destination no retry can make usable (not a flow directory, escapes the root, exists). */
export class DestinationRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DestinationRefused';
  }
}

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
/** Flags of a file made fresh inside a flow directory: never an existing one, never through a symlink. */
export const CREATE_EXCLUSIVE = constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW;
const READ_NOFOLLOW = constants.O_RDONLY | O_NOFOLLOW;

const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;

/** Reads a small JSON file without following a symlink; undefined when there is none. */
export async function readJsonNoFollow(file: string): Promise<Record<string, unknown> | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(file, READ_NOFOLLOW);
  } catch (e) {
    if (code(e) === 'ENOENT') return undefined;
    if (code(e) === 'ELOOP') throw new DestinationRefused(`${path.basename(file)} in ${path.dirname(file)} is a symlink`);
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > 64 * 1024) throw new DestinationRefused(`${file} is not a ferry record`);
    const parsed: unknown = JSON.parse(await fh.readFile('utf8'));
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new DestinationRefused(`${file} is not a ferry record`);
    return parsed as Record<string, unknown>;
  } catch (e) {
    if (e instanceof SyntaxError) throw new DestinationRefused(`${file} is not a ferry record`);
    throw e;
  } finally {
    await fh.close();
  }
}

/** Creates `file` with `content` exclusively (O_EXCL, O_NOFOLLOW) and syncs it; false when it exists. */
export async function writeExclusive(file: string, content: string): Promise<boolean> {
  let fh: FileHandle;
  try {
    fh = await open(file, CREATE_EXCLUSIVE | constants.O_WRONLY, 0o644);
  } catch (e) {
    if (code(e) === 'EEXIST') return false;
    throw e;
  }
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return true;
}

/**
 * Marks `dir` as `flowId`'s. True when it is (now or already); false when another flow's marker is
 * there, or the directory holds files but no marker (not made for any flow).
 */
export async function claimFlowDirectory(dir: string, flowId: string, opts: { fresh: boolean }): Promise<boolean> {
  const marker = path.join(dir, FLOW_MARKER);
  const owner = async () => (await readJsonNoFollow(marker))?.flowId;
  const existing = await owner();
  if (existing !== undefined) return existing === flowId;
  // an existing directory without a marker: ours only if empty (we died between mkdir and marker)
  if (!opts.fresh && (await readdir(dir)).length > 0) return false;
  if (await writeExclusive(marker, `${JSON.stringify({ flowId })}\n`)) return true;
  return (await owner()) === flowId;
}

/** True when `dir` is a real directory (not a symlink) holding a flow marker. */
export async function isFlowDirectory(dir: string): Promise<boolean> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return false;
  const marker = await lstat(path.join(dir, FLOW_MARKER)).catch(() => undefined);
  return !!marker?.isFile();
}

/**
 * The flow directory of a push, checked or made:
 * - provisioned (`provisioned`): `base` itself, which must exist as a real directory inside the
 *   root (gone means released) with a flow marker; without one (a provisioning service's own
 *   directory) the push's flow directory is made inside it, as below;
 * - otherwise `base/<flowId>`, made here with a non-recursive mkdir in an existing `base`; an
 *   existing one is accepted only when it is this flow's (an earlier attempt).
 */
export async function flowDirectory(root: string, base: string, flowId: string, provisioned: boolean, endpoint: string): Promise<string> {
  const refuse = (why: string) => new DestinationRefused(`destination ${JSON.stringify(endpoint)} ${why}`);
  if (provisioned) {
    const st = await lstat(base).catch((e: unknown) => {
      if (code(e) === 'ENOENT' || code(e) === 'ENOTDIR') return undefined;
      throw e;
    });
    if (!st) throw refuse('is gone (released)');
    if (st.isSymbolicLink() || !st.isDirectory()) throw refuse('is not a directory (a symlink?)');
    if (!(await realPathInside(root, base, { strict: true }))) throw refuse('leads outside the root');
    if (await isFlowDirectory(base)) return base;
    // no marker: a provisioning service's own directory (it kept the flag of the address it was
    // given); the push makes its flow directory inside it, as for any unprovisioned destination
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(flowId) || flowId.length > 128) throw refuse(`cannot hold flow ${JSON.stringify(flowId)}`);
  // the destination itself must be there: a push makes no directory but its flow's own, so one that
  // was released (removed) while the push ran is not made again, and nobody names a tree into being
  const parent = await lstat(base).catch((e: unknown) => {
    if (code(e) === 'ENOENT' || code(e) === 'ENOTDIR') return undefined;
    throw e;
  });
  if (!parent) throw refuse('does not exist');
  if (!parent.isDirectory() && !parent.isSymbolicLink()) throw refuse('is not a directory');
  if (!(await realPathInside(root, base))) throw refuse('leads outside the root through a symlink');
  const dir = path.join(base, flowId);
  let fresh = true;
  try {
    await mkdir(dir); // not recursive: the flow's own directory is made here or it is refused
  } catch (e) {
    if (code(e) !== 'EEXIST') throw e;
    fresh = false;
  }
  const st = await lstat(dir);
  if (st.isSymbolicLink() || !st.isDirectory()) throw refuse(`holds ${flowId}, which is not a directory`);
  if (!(await realPathInside(root, dir, { strict: true }))) throw refuse('leads outside the root');
  if (!(await claimFlowDirectory(dir, flowId, { fresh }))) throw refuse(`holds a directory ${flowId} that is not this flow's`);
  return dir;
}

/**
 * Renames `from` to `to` only if `to` does not exist (link + unlink): a rename(2) would replace it.
 * False when `from` is gone; throws EEXIST when `to` exists.
 */
export async function renameNoReplace(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
  } catch (e) {
    if (code(e) === 'ENOENT') return false;
    throw e;
  }
  await unlink(from).catch((e: unknown) => {
    if (code(e) !== 'ENOENT') throw e;
  });
  return true;
}

/** Removes a directory entry that is not a directory (a file or a symlink: never what it points to). */
export async function removeEntry(file: string): Promise<void> {
  const st = await lstat(file).catch(() => undefined);
  if (!st || st.isDirectory()) return;
  await unlink(file).catch((e: unknown) => {
    if (code(e) !== 'ENOENT') throw e;
  });
}

/** Makes renames and links in `dir` durable; some platforms cannot fsync a directory, which is not worth failing for. */
export async function syncDirectory(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, constants.O_RDONLY | (constants.O_DIRECTORY ?? 0));
    await fh.sync();
  } catch {
    // best effort
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
