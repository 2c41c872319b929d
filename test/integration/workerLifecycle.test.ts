import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/keys.js';
import { startDevServer } from '../../worker/devServer.js';
import { REPO_ROOT } from '../../worker/temporalCli.js';
import { freePort } from '../support/cluster.js';

/**
 * How ferry's processes start and stop, run for real: `--help` on every entry point, `npm run dev`
 * stopped by SIGTERM to the npm process (at start-up and once up) leaves no process and no port
 * behind, and a worker started before its Temporal server waits for it with one log line per attempt.
 */

const dirs: string[] = [];
const tmp = (prefix: string) => {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
};
const spawned = new Set<ChildProcess>();
afterAll(() => {
  for (const c of spawned) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Every process below `pid` (from /proc), with its command line. */
function descendants(pid: number): { pid: number; cmd: string }[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: { pid: number; cmd: string }[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${c}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      } catch {
        // gone meanwhile
      }
      out.push({ pid: c, cmd });
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** A process that exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) =>
    execFile(cmd, args, { cwd: REPO_ROOT, env, timeout: 120_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, out: `${stdout}${stderr}` })),
  );
}

/** `npm run dev -- …` as a user starts it; resolves when `until` matches its output (or it exits). */
function startNpmDev(until: (output: string, npm: ChildProcess) => boolean) {
  const data = tmp('ferry-dev-signal-');
  return (async () => {
    const [port, uiPort] = [await freePort(), await freePort()];
    const npm = spawn('npm', ['run', 'dev', '--', '--port', String(port), '--ui-port', String(uiPort), '--data', data], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    spawned.add(npm);
    let output = '';
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    npm.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    npm.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    // the process tree grows without output too (the Temporal server): look at both
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (!until(output, npm)) return;
        clearInterval(timer);
        resolve();
      }, 100);
      void exited.then((code) => {
        clearInterval(timer);
        reject(new Error(`npm run dev exited (${code}) early:\n${output}`));
      });
    });
    return { npm, port, uiPort, exited, output: () => output };
  })();
}

describe('entry points', () => {
  it('--help prints help and exits 0 on every entry point', async () => {
    for (const script of ['dev', 'ferry', 'worker:control-plane', 'worker:data-plane', 'bench', 'tck', 'tck:dps', 'drill', 'drill:full-size']) {
      const r = await run('npm', ['run', '--silent', script, '--', '--help']);
      expect(r.code, `${script}: ${r.out}`).toBe(0);
      expect(r.out, script).toMatch(/^Usage: /m);
    }
  });
});

describe('npm run dev and signals', () => {
  it('SIGTERM to the npm process once it is up stops every process it started, the Temporal server included', async () => {
    const dev = await startNpmDev((out) => out.includes('Up. Start more transfers'));
    const tree = descendants(dev.npm.pid!);
    expect(tree.some((p) => p.cmd.includes('temporal') && p.cmd.includes('start-dev')), JSON.stringify(tree)).toBe(true);
    expect(await portOpen(dev.port)).toBe(true);
    expect(await portOpen(dev.uiPort)).toBe(true);

    dev.npm.kill('SIGTERM');
    await dev.exited;
    expect(dev.output()).toContain('Stopped.');
    expect(tree.filter((p) => alive(p.pid))).toEqual([]);
    expect(await portOpen(dev.port)).toBe(false);
    expect(await portOpen(dev.uiPort)).toBe(false);
  });

  it('SIGTERM while it is still starting (the server up, the demo not yet) stops everything too', async () => {
    let tree: { pid: number; cmd: string }[] = [];
    const dev = await startNpmDev((_out, npm) => {
      tree = descendants(npm.pid!);
      return tree.some((p) => p.cmd.includes('temporal') && p.cmd.includes('start-dev'));
    });
    dev.npm.kill('SIGTERM');
    await dev.exited;
    expect(dev.output()).not.toContain('Up. Start more transfers');
    const after = [...tree, ...descendants(dev.npm.pid!)];
    expect(after.filter((p) => alive(p.pid))).toEqual([]);
    expect(await portOpen(dev.port)).toBe(false);
  });
});

describe('a worker started before its Temporal server', () => {
  it('waits for it (one log line per attempt, /readyz 503 meanwhile), then polls; SIGTERM stops it cleanly', async () => {
    const port = await freePort();
    const dir = tmp('ferry-wait-');
    const config = path.join(dir, 'cp.json');
    writeFileSync(config, JSON.stringify({ connectorId: 'early', temporal: { address: `127.0.0.1:${port}` }, dataPlanes: [{ id: 'dp-1' }] }));
    const worker = spawn(process.execPath, ['--import', 'tsx', 'worker/controlPlaneWorker.ts', '--config', config], {
      cwd: REPO_ROOT,
      env: { ...process.env, FERRY_CODEC_KEYS: Keyring.generate('early').serialize(), HOME: dir, XDG_CONFIG_HOME: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    spawned.add(worker);
    const lines: Record<string, unknown>[] = [];
    let raw = '';
    const waiters: { test: (l: Record<string, unknown>) => boolean; resolve: () => void }[] = [];
    worker.stdout!.on('data', (d: Buffer) => {
      raw += d.toString();
      for (const text of d.toString().split('\n').filter(Boolean)) {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        for (const w of waiters) if (w.test(line)) w.resolve();
      }
    });
    worker.stderr!.on('data', (d: Buffer) => (raw += d.toString()));
    const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));
    const logged = (test: (l: Record<string, unknown>) => boolean) =>
      lines.some(test) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ test, resolve }));

    await logged((l) => l.msg === 'Temporal unreachable; retrying' && l.attempt === 2);
    const health = lines.find((l) => typeof l.health === 'string')!.health as string;
    expect((await fetch(`${health}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${health}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ ready: false, state: 'connecting' });

    const server = await startDevServer({ port });
    try {
      await logged((l) => String(l.msg).includes('polling'));
      expect(lines.some((l) => l.msg === 'connected to Temporal')).toBe(true);
      expect((await fetch(`${health}/readyz`)).status).toBe(200);
      const attempts = lines.filter((l) => l.msg === 'Temporal unreachable; retrying');
      // backoff: each wait at least as long as the one before
      const waits = attempts.map((l) => l.retryInMs as number);
      expect(waits).toEqual([...waits].sort((a, b) => a - b));
      worker.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(lines.map((l) => l.msg)).toContain('stopped');
      expect(raw).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    } finally {
      await server.teardown();
    }
  });

  it('a bad setting stops it at start, naming the variable (exit 2)', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', 'worker/dataPlaneWorker.ts'], {
      ...process.env,
      FERRY_CONFIG_JSON: JSON.stringify({ instanceId: 'dp-1', fileRoot: '/tmp/x' }),
      FERRY_CODEC_KEYS: Keyring.generate('bad-setting').serialize(),
      FERRY_WORKER__SHUTDOWN_GRACE_TIME: 'soon',
    });
    expect(r.code).toBe(2);
    expect(r.out).toContain('FERRY_WORKER__SHUTDOWN_GRACE_TIME: worker.shutdownGraceTime');
  });
});
