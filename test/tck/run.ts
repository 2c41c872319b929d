import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../../worker/temporalCli.js';
import { startTckHarness, TCK_FORMAT, type TckHarness } from './harness.js';

/**
 * `npm run tck [-- --group TP|TP_C] [--tck-port 8083] [--wait 15]`: the Eclipse Dataspace TCK for DSP,
 * transfer-process groups TP (ferry as provider) and TP_C (ferry as consumer), against an in-process
 * ferry. Fetches the TCK jars once (Maven, cached under .tools/tck), runs scripts/tck/TckMain.java and
 * ends with the line `N passed, N failed, N skipped`; exit 0 only if nothing failed and something passed.
 * Background: docs/tck-notes.md.
 */

const TCK_DIR = path.join(REPO_ROOT, '.tools', 'tck');
const LIB_DIR = path.join(TCK_DIR, 'lib');
const POM = path.join(REPO_ROOT, 'scripts', 'tck', 'pom.xml');
const LAUNCHER = path.join(REPO_ROOT, 'scripts', 'tck', 'TckMain.java');
const TEST_PACKAGE = 'org.eclipse.dataspacetck.dsp.verification.tp';
const GROUPS = { TP: '^TP:', TP_C: '^TP_C:' } as const;
/** The test ids of each group (TP_<id> and TP_C_<id>); agreements are ATP<id> / ATPC<id> without the `_`. */
const TEST_IDS = ['01_01', '01_02', '01_03', '01_04', '01_05', '02_01', '02_02', '02_03', '02_04', '02_05', '03_01', '03_02', '03_03', '03_04', '03_05', '03_06'];
const SUMMARY = /^(\d+) passed, (\d+) failed, (\d+) skipped$/;

class UsageError extends Error {}

function parseCli() {
  const { values } = parseArgs({
    options: {
      group: { type: 'string' },
      'tck-port': { type: 'string', default: process.env.FERRY_TCK_PORT ?? '8083' },
      wait: { type: 'string', default: '15' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(`Usage: npm run tck [-- --group TP|TP_C] [--tck-port N] [--wait SECONDS]

Runs the Eclipse Dataspace TCK for DSP (transfer-process groups TP and TP_C) against an in-process
ferry and ends with "N passed, N failed, N skipped". Needs Java 17+ and, the first time, Maven.

Options:
  --group TP|TP_C   one group only (default both)
  --tck-port N      the TCK's callback port (default 8083, or $FERRY_TCK_PORT)
  --wait SECONDS    how long the TCK waits for each step (default 15)
  -h, --help        this help`);
    process.exit(0);
  }
  const group = values.group?.toUpperCase();
  if (group !== undefined && !(group in GROUPS)) throw new UsageError(`--group must be TP or TP_C, not ${values.group}`);
  const tckPort = Number(values['tck-port']);
  if (!Number.isInteger(tckPort) || tckPort < 1 || tckPort > 65535) throw new UsageError(`--tck-port must be a port number, not ${values['tck-port']}`);
  const wait = Number(values.wait);
  if (!Number.isInteger(wait) || wait < 1) throw new UsageError(`--wait must be whole seconds, not ${values.wait}`);
  return { group: group as keyof typeof GROUPS | undefined, tckPort, wait };
}

/** Java ≥ 17 (the TCK's JUnit 6 needs it). */
function checkJava(): void {
  const r = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (r.error) throw new UsageError(`java not found on PATH (${r.error.message}); the TCK needs a JDK 17 or newer`);
  const major = Number(/version "(?:1\.)?(\d+)/.exec(r.stderr)?.[1]);
  if (!(major >= 17)) throw new UsageError(`the TCK needs Java 17 or newer; \`java -version\` says: ${r.stderr.split('\n')[0]}`);
}

/** The TCK jars, fetched by Maven into .tools/tck/lib once per version of the POM. */
function ensureJars(): void {
  const stamp = createHash('sha256').update(readFileSync(POM)).digest('hex');
  const marker = path.join(LIB_DIR, '.pom-sha256');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === stamp) return;
  const mvn = spawnSync('mvn', ['-v'], { encoding: 'utf8' });
  if (mvn.error) throw new UsageError(`mvn not found on PATH (${mvn.error.message}); Maven fetches the TCK jars once into ${path.relative(REPO_ROOT, LIB_DIR)}`);
  console.log(`[tck] fetching the TCK jars with Maven into ${path.relative(REPO_ROOT, LIB_DIR)} …`);
  // into a temp dir first: an interrupted fetch must not look like a complete cache
  const tmp = `${LIB_DIR}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  const r = spawnSync('mvn', ['-q', '-B', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${tmp}`], { stdio: 'inherit' });
  if (r.status !== 0) throw new UsageError(`mvn dependency:copy-dependencies failed (exit ${r.status}); is Maven Central reachable?`);
  writeFileSync(path.join(tmp, '.pom-sha256'), stamp);
  rmSync(LIB_DIR, { recursive: true, force: true });
  renameSync(tmp, LIB_DIR);
}

/** The TCK binds its callback server on this port; find out now rather than from a Java stack trace. */
function checkPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
      .once('error', (e: NodeJS.ErrnoException) =>
        reject(new UsageError(`port ${port} (the TCK's callback server) is not free (${e.code}); stop what uses it or pass --tck-port N`)),
      )
      .listen(port, '127.0.0.1', () => srv.close(() => resolve()));
  });
}

function properties(h: TckHarness, opts: { tckPort: number; callbackAddress: string; wait: number }): string {
  const dspBase = new URL(h.dspUrl);
  const lines = [
    'dataspacetck.launcher=org.eclipse.dataspacetck.dsp.system.DspSystemLauncher',
    'dataspacetck.debug=false',
    'dataspacetck.ansi=false',
    'dataspacetck.dsp.local.connector=false',
    // the TCK's own DSP endpoint; its address must have no path (P3)
    'dataspacetck.host=127.0.0.1',
    `dataspacetck.port=${opts.tckPort}`,
    `dataspacetck.callback.address=${opts.callbackAddress}`,
    `dataspacetck.dsp.default.wait=${opts.wait}`,
    'dataspacetck.dsp.connector.agent.id=ferry',
    `dataspacetck.dsp.connector.http.url=${h.dspUrl}`,
    `dataspacetck.dsp.connector.http.base.url=${dspBase.origin}/`,
    `dataspacetck.dsp.connector.http.headers.authorization=${h.authorization}`,
    // required at start-up, used only by the contract-negotiation tests (not run)
    `dataspacetck.dsp.connector.negotiation.initiate.url=${new URL('/tck/negotiations/requests', h.triggerUrl).href}`,
    `dataspacetck.dsp.connector.transfer.initiate.url=${h.triggerUrl}`,
  ];
  // a missing agreement key silently becomes a random UUID (P8), so every id is spelled out
  for (const id of TEST_IDS) {
    const n = id.replace('_', '');
    lines.push(`TP_${id}_AGREEMENTID=ATP${n}`, `TP_${id}_FORMAT=${TCK_FORMAT}`, `TP_C_${id}_AGREEMENTID=ATPC${n}`, `TP_C_${id}_FORMAT=${TCK_FORMAT}`);
  }
  return `${lines.join('\n')}\n`;
}

interface Outcome {
  passed: number;
  failed: number;
  skipped: number;
  found: boolean;
  failedTests: string[];
}

/** Runs the TCK, echoing its output and picking out the closing line and the failed tests. */
function runTck(configFile: string, group: keyof typeof GROUPS | undefined, onStart: (kill: () => void) => void): Promise<Outcome> {
  const args = ['-cp', `${LIB_DIR}${path.sep}*`, LAUNCHER, '-config', configFile, TEST_PACKAGE, ...(group ? [GROUPS[group]] : [])];
  const child = spawn('java', args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  onStart(() => child.kill('SIGTERM'));
  const outcome: Outcome = { passed: 0, failed: 0, skipped: 0, found: false, failedTests: [] };
  createInterface({ input: child.stdout }).on('line', (line) => {
    console.log(line);
    const summary = SUMMARY.exec(line.trim());
    if (summary) Object.assign(outcome, { passed: Number(summary[1]), failed: Number(summary[2]), skipped: Number(summary[3]), found: true });
    const failed = /\bFAILED: (.+)$/.exec(line);
    if (failed) outcome.failedTests.push(failed[1]!.trim());
    // per-test lines: the counts to show when the TCK dies (or is interrupted) before its closing line
    if (!outcome.found && /\] SUCCESSFUL: /.test(line)) outcome.passed++;
    if (!outcome.found && failed) outcome.failed++;
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve(outcome));
  });
}

async function main(): Promise<number> {
  const { group, tckPort, wait } = parseCli();
  checkJava();
  ensureJars();
  await checkPortFree(tckPort);
  const callbackAddress = `http://localhost:${tckPort}`;
  const harness = await startTckHarness({ tckCallbackAddress: callbackAddress });
  // the file holds the run's bearer token: private temp dir, removed afterwards
  const confDir = mkdtempSync(path.join(os.tmpdir(), 'ferry-tck-conf-'));
  let kill: (() => void) | undefined;
  const onSignal = () => kill?.();
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  let outcome: Outcome;
  try {
    const configFile = path.join(confDir, 'tck.properties');
    writeFileSync(configFile, properties(harness, { tckPort, callbackAddress, wait }), { mode: 0o600 });
    console.log(`[tck] running the DSP TCK (1.0.0-RC6), ${group ? `group ${group}` : 'groups TP and TP_C'}`);
    outcome = await runTck(configFile, group, (k) => (kill = k));
  } finally {
    rmSync(confDir, { recursive: true, force: true });
    const problems = harness.problems();
    await Promise.race([harness.shutdown(), new Promise((r) => setTimeout(r, 30_000))]);
    if (problems.length) console.log(`[tck] scripted reactions that did not go through:\n  ${problems.join('\n  ')}`);
  }
  if (!outcome.found) console.log('[tck] the TCK ended without its closing line (see its output above); counts are of the tests that finished');
  if (outcome.failedTests.length) console.log(`[tck] failed: ${outcome.failedTests.join(', ')}`);
  console.log(`${outcome.passed} passed, ${outcome.failed} failed, ${outcome.skipped} skipped`);
  return outcome.found && outcome.failed === 0 && outcome.passed > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof UsageError ? `[tck] ${e.message}` : e);
    console.log('0 passed, 0 failed, 0 skipped');
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
