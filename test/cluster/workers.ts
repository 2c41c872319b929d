import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** ferry's workers as OS processes, configured as in production: a file and/or FERRY_* and TEMPORAL_* variables. */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface WorkerProcess {
  child: ChildProcess;
  /** Every JSON log line it printed. */
  lines: Record<string, unknown>[];
  health: string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

const started = new Set<ChildProcess>();

export async function startWorker(entry: 'controlPlaneWorker' | 'dataPlaneWorker', args: string[], env: NodeJS.ProcessEnv, timeoutMs = 180_000): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'worker', `${entry}.ts`), ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => started.delete(child));
  const lines: Record<string, unknown>[] = [];
  let raw = '';
  let health = '';
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      raw += d.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const line = JSON.parse(text) as Record<string, unknown>;
          lines.push(line);
          if (typeof line.health === 'string') health = line.health;
          if (String(line.msg).includes('polling')) resolve();
        } catch {
          // not a log line
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => (raw += d.toString()));
    void exited.then((code) => reject(new Error(`${entry} exited (${code}) before polling:\n${raw}`)));
    setTimeout(() => reject(new Error(`${entry} did not poll within ${timeoutMs} ms:\n${raw}`)), timeoutMs).unref();
  });
  return { child, lines, health, exited };
}

export function killWorkers(): void {
  for (const child of started) child.kill('SIGKILL');
}
