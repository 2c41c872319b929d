import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchRow } from '../bench/types.js';
import { GOALS } from '../bench/types.js';
import { runScript } from './support/processes.js';

/**
 * Smoke run of `npm run bench -- --quick`: the instrument works end to end (a dev server, ferry's
 * workers, the baselines, four worker processes for the scale goal) and produces the table and
 * files with a row for every goal. It checks no figure: performance is read from the bench, never
 * asserted in a test.
 */
const out = mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-smoke-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('npm run bench -- --quick', () => {
  it('prints the table and writes JSON, markdown and the SVG plot with the expected rows', { timeout: 600_000 }, async () => {
    const { code, output } = await runScript('bench/run.ts', ['--quick', '--out', out]);
    expect(code, output).toBe(0);
    expect(output).toMatch(/^goal\s+measure\s+ferry\s+baseline\s+ratio\s+unit\s+target$/m);

    const json = JSON.parse(readFileSync(path.join(out, 'latest.json'), 'utf8')) as { mode: string; rows: BenchRow[]; extras: Record<string, unknown> };
    expect(json.mode).toBe('quick');
    const rows = json.rows;
    // every goal has rows, and none of them failed (skipped is fine: datapath or EDC may be absent)
    expect(new Set(rows.map((r) => r.goal))).toEqual(new Set(GOALS));
    expect(rows.filter((r) => r.note?.startsWith('failed:')).map((r) => `${r.goal}: ${r.note}`)).toEqual([]);
    const measures = (goal: BenchRow['goal']) => rows.filter((r) => r.goal === goal).map((r) => r.measure);
    for (const m of measures('cost')) expect(output).toContain(m);

    expect(measures('cost').filter((m) => /^throughput at concurrency \d+: transfers vs minimal 1-activity workflows$/.test(m))).toHaveLength(2);
    expect(measures('cost').filter((m) => /^throughput at concurrency \d+: transfers vs sets of 4 minimal workflows/.test(m))).toHaveLength(2);
    for (const where of ['in-cluster', 'over DSP HTTP']) {
      for (const p of ['p50', 'p99']) expect(measures('latency')).toContain(`tiny push ${where}, request → COMPLETED, ${p}`);
      for (const phase of ['INITIAL→REQUESTED', 'REQUESTED→STARTED', 'STARTED→COMPLETED']) expect(measures('latency')).toContain(`tiny push ${where}, phase ${phase}, p50`);
    }
    expect(measures('history')).toEqual([
      'history events, consumer TransferProcess of a tiny push',
      'history events, consumer DataFlow of a tiny push',
      'history events, provider TransferProcess of a tiny push',
      'history events, provider DataFlow of a tiny push',
      'history events, all four workflows of a tiny push',
    ]);
    expect(measures('scale').some((m) => /pulls started at once: until all \d+ processes \(both sides\) STARTED/.test(m))).toBe(true);
    expect(measures('scale').some((m) => /^suspend-all of \d+ started pulls/.test(m))).toBe(true);
    expect(measures('scale').filter((m) => m.startsWith('RSS peak'))).toHaveLength(4);
    // every row is complete: a number or null in each figure column, and a unit
    for (const r of rows) {
      for (const k of ['ferry', 'baseline', 'ratio'] as const) expect(r[k] === null || typeof r[k] === 'number', `${r.measure} ${k}`).toBe(true);
      expect(typeof r.unit).toBe('string');
    }

    const md = readFileSync(path.join(out, 'latest.md'), 'utf8');
    expect(md).toContain('| goal | measure | ferry | baseline | ratio | unit | target | note |');
    expect(md).toContain('history events, consumer TransferProcess of a tiny push');
    expect(md).toMatch(/\| ActivityTaskScheduled \|/);
    const svg = readFileSync(path.join(out, 'latest.svg'), 'utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg.match(/<polyline /g)).toHaveLength(6); // three methods × two panels
  });
});
