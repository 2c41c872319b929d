import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of the Temporal dev server (a child process of the bench) and of the bench process itself
 * (ferry's or the baseline's workers, their workflow threads, and the client driving the load).
 * Linux /proc; on other systems the figures are NaN.
 */

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const CLK_TCK = 100;

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after "(comm)"; comm may contain spaces
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** User + system CPU milliseconds of a process, or NaN. */
export function processCpuMs(pid: number | undefined): number {
  const f = pid ? statFields(pid) : undefined;
  return f ? ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK : NaN;
}

/** The dev server this process started listening on `port` (its `temporal server start-dev --port N` child). */
export function devServerPid(port: string | number): number | undefined {
  let dirs: string[];
  try {
    dirs = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const d of dirs) {
    if (!/^\d+$/.test(d)) continue;
    const f = statFields(Number(d));
    if (!f || Number(f[1]) !== process.pid) continue;
    try {
      const args = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (args.includes('start-dev') && args[args.indexOf('--port') + 1] === String(port)) return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}

export interface CpuSample {
  server: number;
  bench: number;
}

export const cpuSampler = (serverPid: number | undefined) => (): CpuSample => {
  const u = process.cpuUsage();
  return { server: processCpuMs(serverPid), bench: (u.user + u.system) / 1000 };
};
