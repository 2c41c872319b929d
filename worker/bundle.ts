import path from 'node:path';
import { bundleWorkflowCode, type BundleOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { FAILURE_CONVERTER_PATH } from '../src/codec.js';
import { REPO_ROOT } from './temporalCli.js';

export const CONTROL_PLANE_WORKFLOWS = path.join(REPO_ROOT, 'workflows', 'controlPlane.ts');
export const DATA_PLANE_WORKFLOWS = path.join(REPO_ROOT, 'workflows', 'dataPlane.ts');

/** Our sources import with ESM `.js` suffixes; webpack must map them to the `.ts` files. */
export const bundlerOptions: NonNullable<BundleOptions['webpackConfigHook']> = (config) => {
  config.resolve = { ...config.resolve, extensionAlias: { '.js': ['.ts', '.js'] } };
  return config;
};

/** A workflow bundle with ferry's failure converter in it (workers given a bundle do not add it themselves). */
export function bundle(workflowsPath: string): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath, webpackConfigHook: bundlerOptions, failureConverterPath: FAILURE_CONVERTER_PATH, logger: quietLogger });
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: (m: string) => console.error(m), log: noop } as never;
