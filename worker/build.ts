import { buildBundles } from './bundle.js';

/**
 * `npm run build`, last step (after tsc, and after copying src/failureConverter.cjs, which tsc does
 * not emit and src/codec.ts needs at load): the workflow bundles production workers load (dist/bundles).
 */
const written = await buildBundles();
for (const file of written) console.log(`workflow bundle ${file}`);
