import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { bundle, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../worker/bundle.js';
import { installRuntime } from '../worker/runtime.js';

/**
 * Replays recorded histories (test/histories, made by scripts/record-histories.ts) against the
 * current workflow code: a change that would break transfers in flight fails here, naming the
 * history. No Temporal server needed.
 */
const HISTORIES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'histories');
const files = readdirSync(HISTORIES)
  .filter((f) => f.endsWith('.json'))
  .sort();

type Kind = 'transfer-process' | 'data-flow';
const kindOf = (file: string): Kind | undefined =>
  file.includes('-transfer-process-') ? 'transfer-process' : file.includes('-data-flow-') ? 'data-flow' : undefined;
const load = (file: string): { events: unknown[] } => JSON.parse(readFileSync(path.join(HISTORIES, file), 'utf8')) as { events: unknown[] };

let bundles: Record<Kind, WorkflowBundleWithSourceMap>;

beforeAll(async () => {
  installRuntime();
  const [controlPlane, dataPlane] = await Promise.all([bundle(CONTROL_PLANE_WORKFLOWS), bundle(DATA_PLANE_WORKFLOWS)]);
  bundles = { 'transfer-process': controlPlane, 'data-flow': dataPlane };
});

describe('recorded histories', () => {
  it('are there, each named by its kind and with real content', () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
    for (const file of files) {
      expect(kindOf(file), `${file}: name must contain -transfer-process- or -data-flow-`).toBeDefined();
      expect(load(file).events.length, `${file}: events`).toBeGreaterThan(10);
    }
  });

  it.each(files)('%s replays with the current workflow code', async (file) => {
    const kind = kindOf(file);
    if (!kind) throw new Error(`${file}: cannot tell the workflow kind from the name`);
    await Worker.runReplayHistory({ workflowBundle: bundles[kind] }, historyFromJSON(load(file)), file.replace(/\.json$/, ''));
  });
});
