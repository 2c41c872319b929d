import { mkdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { isInside } from '../../src/FileAddress.js';

/**
 * Symlink-aware confinement for code that does file I/O under a data-plane root. `resolveInRoot`
 * is lexical; a symlink inside the root can still point outside, which only real paths reveal.
 */

/**
 * True when the real path of `target` — or of its deepest existing ancestor, when it does not exist
 * yet — lies within the real root. `strict` also refuses the root itself.
 */
export async function realPathInside(root: string, target: string, opts: { strict?: boolean } = {}): Promise<boolean> {
  const [realRoot, realTarget] = await Promise.all([realpath(root), realpath(await deepestExisting(target))]);
  if (opts.strict && realTarget === realRoot) return false;
  return isInside(realRoot, realTarget);
}

/**
 * `mkdir -p dir` that refuses (returns false, creating nothing) when an existing ancestor leads out
 * of the root; mkdir would otherwise follow such a symlink. Checked again after creation in case a
 * symlink was swapped in meanwhile.
 */
export async function mkdirInside(root: string, dir: string): Promise<boolean> {
  await mkdir(root, { recursive: true });
  if (!(await realPathInside(root, dir))) return false;
  await mkdir(dir, { recursive: true });
  return realPathInside(root, dir);
}

async function deepestExisting(target: string): Promise<string> {
  for (let current = path.resolve(target); ; current = path.dirname(current)) {
    try {
      await realpath(current);
      return current;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || path.dirname(current) === current) throw err;
    }
  }
}
