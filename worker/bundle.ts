import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { bundleWorkflowCode, type BundleOptions, type WorkerOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { FAILURE_CONVERTER_PATH } from '../src/codec.js';
import { REPO_ROOT } from './temporalCli.js';

export type Plane = 'controlPlane' | 'dataPlane';

export const CONTROL_PLANE_WORKFLOWS = path.join(REPO_ROOT, 'workflows', 'controlPlane.ts');
export const DATA_PLANE_WORKFLOWS = path.join(REPO_ROOT, 'workflows', 'dataPlane.ts');
const WORKFLOWS: Record<Plane, string> = { controlPlane: CONTROL_PLANE_WORKFLOWS, dataPlane: DATA_PLANE_WORKFLOWS };

/** Where `npm run build` writes the workflow bundles that production workers load. */
export const BUNDLE_DIR = path.join(REPO_ROOT, 'dist', 'bundles');

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

const sdkVersion = (): string => (createRequire(import.meta.url)('@temporalio/worker/package.json') as { version: string }).version;

/**
 * A hash of everything a bundle is made of (workflows/ and src/ sources, SDK version); undefined
 * where the sources are not shipped (an image or package with only the built bundles).
 */
export function workflowSourcesHash(): string | undefined {
  const dirs = ['workflows', 'src'].map((d) => path.join(REPO_ROOT, d));
  if (!existsSync(WORKFLOWS.controlPlane)) return undefined;
  const hash = createHash('sha256').update(sdkVersion());
  for (const dir of dirs) {
    const files = (readdirSync(dir, { recursive: true }) as string[]).filter((n) => /\.(ts|cjs)$/.test(n)).sort();
    for (const name of files) hash.update(name).update(readFileSync(path.join(dir, name)));
  }
  return hash.digest('hex');
}

interface Manifest {
  sdkVersion: string;
  sourcesHash: string | null;
  builtAt: string;
}

/** `npm run build`: both planes' bundles and a manifest that says what they were built from. */
export async function buildBundles(outDir = BUNDLE_DIR): Promise<string[]> {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  for (const plane of Object.keys(WORKFLOWS) as Plane[]) {
    const { code } = await bundle(WORKFLOWS[plane]);
    const file = path.join(outDir, `${plane}.js`);
    writeFileSync(file, code);
    written.push(file);
  }
  const manifest: Manifest = { sdkVersion: sdkVersion(), sourcesHash: workflowSourcesHash() ?? null, builtAt: new Date().toISOString() };
  writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return written;
}

/**
 * The prebuilt bundle of a plane, if there is one that matches: built by this SDK version from
 * these sources (or the sources are not here at all). A stale one is never loaded.
 */
export function prebuiltBundle(plane: Plane, dir = BUNDLE_DIR): { codePath: string } | { stale: string } | undefined {
  const codePath = path.join(dir, `${plane}.js`);
  const manifestPath = path.join(dir, 'manifest.json');
  if (!existsSync(codePath) || !existsSync(manifestPath)) return undefined;
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  if (manifest.sdkVersion !== sdkVersion()) return { stale: `built with @temporalio/worker ${manifest.sdkVersion}, running ${sdkVersion()}` };
  const current = workflowSourcesHash();
  if (current !== undefined && manifest.sourcesHash !== current) return { stale: 'workflow sources changed since `npm run build`' };
  return { codePath };
}

/** Worker options for a plane's workflows: the prebuilt bundle when it is current, else bundled now from source. */
export function workflowCode(plane: Plane, onStale?: (why: string) => void): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath' | 'bundlerOptions'> {
  const prebuilt = prebuiltBundle(plane);
  if (prebuilt && 'codePath' in prebuilt) return { workflowBundle: prebuilt };
  if (prebuilt) onStale?.(prebuilt.stale);
  return { workflowsPath: WORKFLOWS[plane], bundlerOptions: { webpackConfigHook: bundlerOptions } };
}
