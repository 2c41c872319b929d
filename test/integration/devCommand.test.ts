import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/cluster.js';
import { runScript } from '../support/processes.js';

/** The README's main command, `npm run dev`, run for real (with --once so it ends by itself). */
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ferry-dev-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

async function runDev(): Promise<{ code: number | null; output: string }> {
  const [port, uiPort] = [await freePort(), await freePort()];
  const { code, output } = await runScript('worker/dev.ts', ['--once', '--port', String(port), '--ui-port', String(uiPort), '--data', dataDir]);
  return { code, output: output.replaceAll(String(uiPort), 'UI_PORT') };
}

describe('npm run dev', () => {
  it('runs a real demo transfer to COMPLETED with the Web UI up, and keeps state across restarts', async () => {
    const first = await runDev();
    expect(first.code, first.output).toBe(0);
    expect(first.output).toContain('Web UI at http://localhost:UI_PORT (HTTP 200)');
    expect(first.output).toContain('0 transfer processes recorded');
    expect(first.output).toMatch(/consumer TransferProcess +http:\/\/localhost:UI_PORT\/namespaces\/default\/workflows\/transfer-consumer-/);
    expect(first.output).toContain('Demo transfer COMPLETED: transfer completed');
    expect(first.output).toMatch(/delivered .*demo\.bin: sha256 [0-9a-f]{64} equals the source/);
    // payloads are encrypted, and the Web UI reads them through the codec server (--ui-codec-endpoint)
    expect(first.output).toMatch(/Codec server at http:\/\/127\.0\.0\.1:\d+: the Web UI decodes payloads with it \(checked on the demo's input\)/);

    const second = await runDev();
    expect(second.code, second.output).toBe(0);
    // the consumer and provider processes of the first run are still in the SQLite file
    expect(second.output).toContain('2 transfer processes recorded');
  });
});
