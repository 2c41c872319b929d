import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ferryDataConverter } from '../../src/codec.js';
import { Keyring } from '../../src/keys.js';
import { startDevServer } from '../../worker/devServer.js';
import { installRuntime } from '../../worker/runtime.js';
import { REPO_ROOT } from '../../worker/temporalCli.js';
import { startControlPlaneSide } from './controlPlaneHarness.js';
import { startDataPlaneSide } from './dataPlaneHarness.js';
import { KNOWN_FAILURES } from './knownFailures.js';

/**
 * `npm run tck:dps [-- --group DP|CP] [--tck-port 8083] [--wait 15]`: the Eclipse DPS TCK (1.2.0)
 * against ferry: DP (ferry's data plane, the TCK as its control plane) and CP (ferry's control plane,
 * the TCK as its data plane and as the DSP counterparty). The TCK runtime jar comes from
 * `$DPS_TCK_JAR`. Prints one line per test and ends with `N passed, N failed, N skipped`; exit 0
 * only if nothing failed and something passed. The upstream main always exits 0, so the outcome is
 * read from its `SUCCESSFUL:`/`FAILED:` lines.
 */

const GROUPS = {
  DP: { expected: 28 },
  CP: { expected: 10 },
} as const;
type Group = keyof typeof GROUPS;

class UsageError extends Error {}

function parseCli() {
  const { values } = parseArgs({
    options: {
      group: { type: 'string' },
      'tck-port': { type: 'string', default: process.env.FERRY_DPS_TCK_PORT ?? '8083' },
      wait: { type: 'string', default: '15' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(`Usage: DPS_TCK_JAR=/path/to/dps-tck-runtime.jar npm run tck:dps -- [--group DP | CP] [--tck-port N (8083)] [--wait S (15)]

Runs the Eclipse DPS TCK 1.2.0 against ferry's data plane (DP) and control plane (CP); ends with
"N passed, N failed, N skipped" (README, "The DPS TCK").`);
    process.exit(0);
  }
  const group = values.group?.toUpperCase();
  if (group !== undefined && !(group in GROUPS)) throw new UsageError(`--group must be DP or CP, not ${values.group}`);
  const tckPort = Number(values['tck-port']);
  if (!Number.isInteger(tckPort) || tckPort < 1 || tckPort > 65535) throw new UsageError(`--tck-port must be a port number, not ${values['tck-port']}`);
  const wait = Number(values.wait);
  if (!Number.isInteger(wait) || wait < 1) throw new UsageError(`--wait must be whole seconds, not ${values.wait}`);
  return { groups: group ? [group as Group] : (['DP', 'CP'] as Group[]), tckPort, wait };
}

function tckJar(): string {
  const jar = process.env.DPS_TCK_JAR;
  if (!jar) throw new UsageError('set DPS_TCK_JAR to the DPS TCK 1.2.0 runtime jar (dps-tck-runtime.jar; Maven Central org.eclipse.dataspacetck.dps:dps-tck, or the eclipsedataspacetck/dps-tck-runtime image)');
  if (!existsSync(jar)) throw new UsageError(`DPS_TCK_JAR=${jar} does not exist`);
  const r = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (r.error) throw new UsageError(`java not found on PATH (${r.error.message}); the TCK needs Java 17 or newer`);
  const major = Number(/version "(?:1\.)?(\d+)/.exec(r.stderr)?.[1]);
  if (!(major >= 17)) throw new UsageError(`the TCK needs Java 17 or newer; \`java -version\` says: ${r.stderr.split('\n')[0]}`);
  return jar;
}

function checkPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
      .once('error', (e: NodeJS.ErrnoException) => reject(new UsageError(`port ${port} (the TCK's callback server) is not free (${e.code}); pass --tck-port N`)))
      .listen(port, '127.0.0.1', () => srv.close(() => resolve()));
  });
}

export interface TestOutcome {
  id: string;
  status: 'SUCCESSFUL' | 'FAILED' | 'ABORTED';
}

/** Runs the TCK jar with a properties file; the outcome of each test, from its `STATUS: ID…` lines. */
function runTck(jar: string, configFile: string, onStart: (kill: () => void) => void): Promise<TestOutcome[]> {
  const child = spawn('java', ['-jar', jar, '-config', configFile], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  onStart(() => child.kill('SIGTERM'));
  const outcomes: TestOutcome[] = [];
  const echo = (line: string) => {
    console.log(line);
    const m = /\b(SUCCESSFUL|FAILED|ABORTED): ([A-Z_]+:\d{2}-\d{2})/.exec(line);
    if (m) outcomes.push({ status: m[1] as TestOutcome['status'], id: m[2]! });
  };
  createInterface({ input: child.stdout }).on('line', echo);
  createInterface({ input: child.stderr }).on('line', (l) => console.log(l));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve(outcomes));
  });
}

async function main(): Promise<number> {
  const { groups, tckPort, wait } = parseCli();
  const jar = tckJar();
  await checkPortFree(tckPort);
  installRuntime();
  const callbackAddress = `http://localhost:${tckPort}`;
  const root = mkdtempSync(path.join(os.tmpdir(), 'ferry-dps-tck-'));
  const codec = Keyring.generate('tck-dps');
  const env = await startDevServer({ dataConverter: ferryDataConverter(codec) });
  let kill: (() => void) | undefined;
  const onSignal = () => kill?.();
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const all: TestOutcome[] = [];
  try {
    for (const group of groups) {
      const side =
        group === 'DP'
          ? await startDataPlaneSide({ env, codec, root, tckCallbackAddress: callbackAddress, tckPort })
          : await startControlPlaneSide({ env, codec, root, tckCallbackAddress: callbackAddress });
      // the file holds the run's bearer tokens: private, removed afterwards
      const configFile = path.join(root, `tck-${group}.properties`);
      try {
        const lines = [
          'dataspacetck.launcher=org.eclipse.dataspacetck.dps.system.DpsSystemLauncher',
          'dataspacetck.debug=false',
          'dataspacetck.ansi=false',
          'dataspacetck.host=127.0.0.1',
          `dataspacetck.port=${tckPort}`,
          `dataspacetck.callback.address=${callbackAddress}`,
          `dataspacetck.dps.default.wait=${wait}`,
          ...side.properties(),
        ];
        writeFileSync(configFile, `${lines.join('\n')}\n`, { mode: 0o600 });
        console.log(`[tck:dps] running the DPS TCK, group ${group}`);
        const outcomes = await runTck(jar, configFile, (k) => (kill = k));
        if (outcomes.length !== GROUPS[group].expected) console.log(`[tck:dps] group ${group}: ${outcomes.length} results, ${GROUPS[group].expected} expected`);
        all.push(...outcomes);
      } finally {
        await Promise.race([side.shutdown(), new Promise((r) => setTimeout(r, 30_000))]);
      }
    }
  } finally {
    await env.teardown().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
  const passed = all.filter((o) => o.status === 'SUCCESSFUL');
  const failed = all.filter((o) => o.status !== 'SUCCESSFUL');
  console.log(`[tck:dps] passed: ${passed.map((o) => o.id).join(' ') || '-'}`);
  console.log(`[tck:dps] failed: ${failed.map((o) => o.id).join(' ') || '-'}`);
  const unexpected = failed.filter((o) => !(o.id in KNOWN_FAILURES));
  for (const o of failed.filter((f) => f.id in KNOWN_FAILURES)) console.log(`[tck:dps] known: ${o.id} cannot pass: ${KNOWN_FAILURES[o.id]}`);
  const expected = groups.reduce((n, g) => n + GROUPS[g].expected, 0);
  console.log(`${passed.length} passed, ${failed.length} failed, ${Math.max(0, expected - all.length)} skipped`);
  // success: every test ran, and only the known ones failed
  return unexpected.length === 0 && all.length === expected && passed.length > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof UsageError ? `[tck:dps] ${e.message}` : e);
    console.log('0 passed, 0 failed, 0 skipped');
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
