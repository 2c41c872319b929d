import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/cluster.js';
import { runScript } from '../support/processes.js';

/**
 * `npm run tck` end to end: the real Eclipse DSP TCK (Java, jars fetched by Maven on first use)
 * against ferry. Every enabled TP and TP_C test must pass. Skipped only where there is no Java at
 * all, since the TCK is a Java program; anything else that goes wrong fails.
 */
const hasJava = !spawnSync('java', ['-version']).error;

describe.skipIf(!hasJava)('the DSP TCK (transfer process, TP and TP_C)', () => {
  it('passes every enabled test', { timeout: 600_000 }, async () => {
    const { code, output } = await runScript('test/tck/run.ts', ['--tck-port', String(await freePort())]);
    const last = output.trim().split('\n').at(-1) ?? '';
    // 32 tests in the two groups; TP:02-04 and TP_C:02-04 are @Disabled in the TCK itself
    expect(last, output.slice(-4000)).toBe('30 passed, 0 failed, 2 skipped');
    expect(code).toBe(0);
  });
});
