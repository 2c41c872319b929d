import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the nearest folder with a package.json (worker/ from source, dist/worker/ when built). */
export const REPO_ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();
export const VENV_TEMPORAL = path.join(REPO_ROOT, '.tools', 'venv', 'bin', 'temporal');

export type TemporalExecutable =
  | { type: 'existing-path'; path: string; source: 'TEMPORAL_CLI' | 'PATH' | 'venv' }
  | { type: 'cached-download'; source: 'sdk-download' };

const executable = (p: string): boolean => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * Where the Temporal CLI is (`npm run setup` installs the version pinned in package.json
 * `config.temporalCliVersion` into the venv): $TEMPORAL_CLI, then `temporal` on PATH, then the project's venv,
 * then the SDK's own download (needs internet).
 */
export function resolveTemporalCli(env: NodeJS.ProcessEnv = process.env): TemporalExecutable {
  const fromEnv = env.TEMPORAL_CLI;
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`TEMPORAL_CLI=${fromEnv} is not an executable file`);
    return { type: 'existing-path', path: fromEnv, source: 'TEMPORAL_CLI' };
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'temporal');
    if (executable(candidate)) return { type: 'existing-path', path: candidate, source: 'PATH' };
  }
  if (executable(VENV_TEMPORAL)) return { type: 'existing-path', path: VENV_TEMPORAL, source: 'venv' };
  return { type: 'cached-download', source: 'sdk-download' };
}

/** The `server.executable` option of `@temporalio/testing`. */
export function serverExecutable(env?: NodeJS.ProcessEnv): { type: 'existing-path'; path: string } | { type: 'cached-download' } {
  const found = resolveTemporalCli(env);
  return found.type === 'existing-path' ? { type: 'existing-path', path: found.path } : { type: 'cached-download' };
}
