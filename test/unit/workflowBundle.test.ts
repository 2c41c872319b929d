import { bundleWorkflowCode } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { FAILURE_CONVERTER_PATH } from '../../src/codec.js';
import { bundlerOptions, CONTROL_PLANE_WORKFLOWS, DATA_PLANE_WORKFLOWS } from '../../worker/bundle.js';

/**
 * What the workflow bundles are made of. Every cached workflow runs the bundle's module code, so a
 * library in it costs CPU and memory per workflow (issue 12: zod's schema construction was a third
 * of in-bundle CPU and about a megabyte per cached workflow). Validation happens at the boundaries;
 * workflows/ import only the zod-free contract modules of src/ (schemas live in src/schemas/).
 */
async function modulesOf(workflowsPath: string): Promise<string[]> {
  const modules: string[] = [];
  await bundleWorkflowCode({
    workflowsPath,
    failureConverterPath: FAILURE_CONVERTER_PATH,
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} } as never,
    // the worker's own options, plus a plugin that records every module webpack put in
    webpackConfigHook: (config) => {
      const hooked = bundlerOptions(config);
      hooked.plugins = [
        ...(hooked.plugins ?? []),
        {
          apply: (compiler) =>
            compiler.hooks.done.tap('module-list', (stats) => {
              for (const m of stats.compilation.modules) {
                const resource = (m as { resource?: string }).resource;
                if (resource) modules.push(resource);
              }
            }),
        },
      ];
      return hooked;
    },
  });
  return modules;
}

describe('workflow bundles', () => {
  it.each([
    ['control plane', CONTROL_PLANE_WORKFLOWS],
    ['data plane', DATA_PLANE_WORKFLOWS],
  ])('the %s bundle holds no zod, no ipaddr.js and no schema module', async (_plane, workflowsPath) => {
    const modules = await modulesOf(workflowsPath);
    // the list is real: the workflows and their contracts are in it
    expect(modules.some((m) => m.endsWith('/src/DataAddress.ts'))).toBe(true);
    expect(modules.some((m) => m.includes('/node_modules/@temporalio/workflow/'))).toBe(true);
    const banned = modules.filter((m) => /\/node_modules\/(zod|ipaddr\.js)\/|\/src\/schemas\/|\/src\/urlPolicy\.ts$|\/src\/config\.ts$/.test(m));
    expect(banned).toEqual([]);
  }, 60_000);
});
