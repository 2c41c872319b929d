import path from 'node:path';

/**
 * Confinement of `File` data addresses. A data plane only touches files under its configured root,
 * whatever endpoint a counterparty or consumer sends; these checks are lexical (no symlink resolution),
 * callers that do I/O add a realpath check where it matters.
 */

/** A File endpoint that resolves outside the data plane's root (or is otherwise unusable). */
export class FileAddressError extends Error {
  readonly endpoint: string;
  readonly root: string;

  constructor(endpoint: string, root: string, detail: string) {
    super(`File endpoint ${JSON.stringify(endpoint)} ${detail} (root ${JSON.stringify(root)})`);
    this.name = 'FileAddressError';
    this.endpoint = endpoint;
    this.root = root;
  }
}

/** True when `child` is `parent` itself or lies below it (both absolute and normalised). */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  if (rel === '') return true;
  // A different drive on Windows yields an absolute "relative" path.
  if (path.isAbsolute(rel)) return false;
  // Compare whole segments: "..data" is a legal name inside the root, ".." is not.
  return rel !== '..' && !rel.startsWith(`..${path.sep}`);
}

/**
 * Resolves a File endpoint (relative to `root`, or absolute) to an absolute path and throws
 * `FileAddressError` when it lies outside `root`. The root itself is allowed.
 */
export function resolveInRoot(root: string, endpoint: string): string {
  if (root.length === 0 || root.includes('\0')) throw new FileAddressError(endpoint, root, 'cannot be resolved: invalid root');
  if (endpoint.length === 0) throw new FileAddressError(endpoint, root, 'is empty');
  if (endpoint.includes('\0')) throw new FileAddressError(endpoint, root, 'contains a NUL character');
  const absRoot = path.resolve(root);
  const resolved = path.resolve(absRoot, endpoint);
  if (!isInside(absRoot, resolved)) throw new FileAddressError(endpoint, root, 'escapes the data-plane root');
  return resolved;
}

/**
 * Purely syntactic confinement check for a party that does not know the root: a non-empty relative
 * path (POSIX or Windows absolute forms both refused) that stays below its base after POSIX normalisation.
 */
export function isConfinedPath(endpoint: string): boolean {
  if (endpoint.length === 0 || endpoint.includes('\0')) return false;
  if (path.posix.isAbsolute(endpoint) || path.win32.isAbsolute(endpoint)) return false;
  // "C:foo" is drive-relative on Windows: not confined to any base either.
  if (/^[A-Za-z]:/.test(endpoint)) return false;
  const normalised = path.posix.normalize(endpoint);
  return normalised !== '..' && !normalised.startsWith('../');
}

/**
 * File address property: `false` means the destination directory must already exist (a provisioner
 * made it) and is never created by a transfer; gone means released, and the transfer is refused.
 */
export const CREATE_DIRECTORY = 'createDirectory';
