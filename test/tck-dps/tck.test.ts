import { describe, expect, it } from 'vitest';
import { freePort } from '../support/cluster.js';
import { runScript } from '../support/processes.js';
import { KNOWN_FAILURES } from './knownFailures.js';

/**
 * `npm run tck:dps` end to end: the Eclipse DPS TCK 1.2.0 (Java) against ferry's control plane and
 * data plane. Its jar is not on the registries this project reaches, so the test needs
 * `DPS_TCK_JAR` (the runtime jar; Maven Central `org.eclipse.dataspacetck.dps:dps-tck`, or the
 * `eclipsedataspacetck/dps-tck-runtime` image) and is skipped without it. Every test passes but the
 * two that cannot (README, knownFailures.ts).
 */
const jar = process.env.DPS_TCK_JAR;
if (!jar) console.log('[tck:dps] skipped: set DPS_TCK_JAR to the DPS TCK 1.2.0 runtime jar to run the DPS TCK in npm test');

describe.skipIf(!jar)('the DPS TCK (CP and DP groups)', () => {
  it('passes all 38 tests but the known ones', { timeout: 900_000 }, async () => {
    const { code, output } = await runScript('test/tck-dps/run.ts', ['--tck-port', String(await freePort())]);
    const passed = (/\[tck:dps\] passed: (.*)$/m.exec(output)?.[1] ?? '').split(' ').filter((t) => t && t !== '-');
    const failed = (/\[tck:dps\] failed: (.*)$/m.exec(output)?.[1] ?? '').split(' ').filter((t) => t && t !== '-');
    expect(failed.sort(), output.slice(-6000)).toEqual(Object.keys(KNOWN_FAILURES).sort());
    expect(passed).toHaveLength(38 - failed.length);
    expect(code).toBe(0);
  });
});
