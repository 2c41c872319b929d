import { describe, expect, it } from 'vitest';
import type { TransferDetails } from '../../src/inspect.js';
import { formatBytes, formatDuration, ProgressView } from '../../worker/cli.js';

/** `ferry transfer follow`'s rendering: rate over recent samples, ETA when the size is known, line mode off a terminal. */

const MiB = 1024 * 1024;
const details = (state: string, bytes?: number, totalBytes?: number, final = false): TransferDetails =>
  ({
    status: { processId: 'p1', state, history: [] },
    pendingActivities: [],
    final,
    ...(bytes !== undefined ? { progress: { bytes, ...(totalBytes !== undefined ? { totalBytes } : {}), from: 'heartbeat', flowWorkflowId: 'dataflow-provider-p1' } } : {}),
  }) as unknown as TransferDetails;

function view(isTTY: boolean, json = false) {
  let now = 0;
  const out: string[] = [];
  const written: string[] = [];
  const v = new ProgressView({ out: (l) => out.push(l), err: (l) => out.push(`ERR ${l}`), isTTY, write: (t) => written.push(t) }, json, () => now);
  return { v, out, written, at: (ms: number) => (now = ms) };
}

describe('follow progress', () => {
  it('a terminal gets one line redrawn in place: bar, bytes, rate and ETA', () => {
    const { v, written, out, at } = view(true);
    at(0);
    v.update(details('STARTED', 0, 10 * MiB));
    at(2000);
    v.update(details('STARTED', 4 * MiB, 10 * MiB));
    const last = written.at(-1)!;
    expect(last.startsWith('\r\x1b[2K')).toBe(true);
    expect(last).toContain('STARTED  [##########..............]  40%  4.0 MiB/10.0 MiB  2.0 MiB/s  ETA 3s');
    at(5000);
    v.done(details('COMPLETED', 10 * MiB, 10 * MiB, true));
    expect(written.at(-1)).toBe('\n');
    expect(out).toEqual(['transfer p1 COMPLETED']);
  });

  it('off a terminal: one timestamped line per state change, bytes at most every 5 s; unknown size shows bytes and rate only', () => {
    const { v, out, at } = view(false);
    at(0);
    v.update(details('REQUESTED'));
    at(1000);
    v.update(details('STARTED', 1 * MiB));
    at(2000);
    v.update(details('STARTED', 2 * MiB));
    at(7000);
    v.update(details('STARTED', 7 * MiB));
    expect(out).toEqual([
      '1970-01-01T00:00:00.000Z  REQUESTED',
      '1970-01-01T00:00:01.000Z  STARTED  1.0 MiB',
      '1970-01-01T00:00:07.000Z  STARTED  7.0 MiB  1.0 MiB/s',
    ]);
  });

  it('--json: one object per change', () => {
    const { v, out, at } = view(false, true);
    at(0);
    v.update(details('STARTED', 0, 100));
    v.update(details('STARTED', 0, 100));
    at(1000);
    v.update(details('STARTED', 50, 100));
    expect(out.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
      expect.objectContaining({ state: 'STARTED', bytes: 0, totalBytes: 100, final: false }),
      expect.objectContaining({ state: 'STARTED', bytes: 50, bytesPerSec: 50 }),
    ]);
  });

  it('formats sizes and durations', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(3 * 1024 * MiB)).toBe('3.0 GiB');
    expect(formatDuration(59)).toBe('59s');
    expect(formatDuration(61)).toBe('1m01s');
    expect(formatDuration(3 * 3600 + 120)).toBe('3h02m');
    expect(formatDuration(Infinity)).toBe('?');
  });
});
