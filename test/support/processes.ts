import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../../worker/temporalCli.js';

/** Worker processes started by a test, so they can be killed whatever happens. */
export const children = new Set<ChildProcess>();
/** Everything each worker process printed (kept after it exits), for `scanLogs`. */
export const workerOutputs: { name: string; text: string }[] = [];

/**
 * Starts a worker entry point (`worker/<entry>.ts --config FILE`) as its own OS process; resolves once
 * it polls. `env` adds to this process's environment: the worker's keys (`cluster.workerEnv(…)`).
 */
export async function spawnWorker(
  entry: 'controlPlaneWorker' | 'dataPlaneWorker',
  configFile: string,
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ChildProcess> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, `worker/${entry}.ts`), '--config', configFile], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const log = { name: `${entry} ${path.basename(configFile)} (pid ${child.pid})`, text: '' };
  workerOutputs.push(log);
  let output = '';
  // all of it, for as long as the process lives (the output is scanned for secrets at the end)
  child.stdout!.on('data', (d: Buffer) => (log.text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log.text += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('polling')) resolve();
    });
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => reject(new Error(`${entry} exited (${code}) before polling:\n${output}`)));
    // bounded: a worker that neither polls nor exits fails the test with what it printed
    setTimeout(() => reject(new Error(`${entry} did not poll within ${timeoutMs} ms:\n${output}`)), timeoutMs).unref();
  });
  return child;
}

export function killAll(): void {
  for (const c of children) c.kill('SIGKILL');
}

/** Runs a TypeScript entry point of the repo (`tsx FILE ARGS…`) to its end; its exit code and everything it printed. */
export async function runScript(file: string, args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, file), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  // the last output may still be in the pipes; a grandchild holding them open must not hang the test
  await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
  return { code, output };
}
