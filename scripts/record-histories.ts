/**
 * Records the event histories of real transfers for the replay tests (test/replay.test.ts).
 *
 *   npx tsx scripts/record-histories.ts            # refuses to overwrite existing recordings
 *   npx tsx scripts/record-histories.ts --force    # re-record (only after a deliberate decision)
 *   npx tsx scripts/record-histories.ts --only pull # record just the named scenario(s), e.g. a new one
 *   npx tsx scripts/record-histories.ts --prefix tables-  # a new generation beside the old one (after a patched() change)
 *
 * Starts a cluster (in-memory Temporal dev server + workers), runs each scenario to its end and
 * writes every TransferProcess and DataFlow history involved to
 * test/histories/<scenario>-<kind>-<role>.json (kind: transfer-process | data-flow).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { historyToJSON, type History } from '@temporalio/common/lib/proto-utils.js';
import type { TransferRequest } from '../src/client.js';
import type { DataFlowState } from '../src/DataFlowState.js';
import { dataFlowWorkflowId, inClusterAddress, transferProcessWorkflowId } from '../src/ids.js';
import { startProvisioningService, type ProvisioningService } from '../test/fixtures/provisioningService.js';
import { startCluster, type Cluster } from '../test/support/cluster.js';
import { decodePayloadsIn } from '../test/support/historyScan.js';
import { EncryptionCodec } from '../src/codec.js';
import { flowStatus, makeAsset, providerPidOf, statesOf } from '../test/support/transfers.js';

const HISTORIES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'histories');

type Kind = 'transfer-process' | 'data-flow';
type Role = 'consumer' | 'provider';

/** A workflow to record once its scenario has run: closed, or settled in `openIn` when it stays open. */
interface Recording {
  scenario: string;
  kind: Kind;
  role: Role;
  connectorId: string;
  processId: string;
  /** DataFlows that never close (a deprovisioner that never calls back): record them waiting in this state. */
  openIn?: DataFlowState;
}

const { values: args } = parseArgs({
  options: { force: { type: 'boolean', default: false }, only: { type: 'string', multiple: true }, prefix: { type: 'string', default: '' } },
});

const SCENARIOS = ['completed', 'suspend-resume-terminate', 'stale-wait', 'callback-retry', 'pull'] as const;
const unknown = (args.only ?? []).filter((n) => !(SCENARIOS as readonly string[]).includes(n));
if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.join(', ')}`);
const selected = SCENARIOS.filter((n) => !args.only?.length || args.only.includes(n));

const ASSET_SMALL = 64 * 1024;
// 48 MiB at 4 MiB/s: stays STARTED long enough to suspend, resume and terminate while bytes move
const ASSET_BIG = 48 * 1024 * 1024;
const RATE = 4 * 1024 * 1024;

async function main(): Promise<void> {
  mkdirSync(HISTORIES, { recursive: true });
  const existing = selected.flatMap((scenario) =>
    (['transfer-process', 'data-flow'] as const).flatMap((kind) => (['consumer', 'provider'] as const).map((role) => fileOf({ scenario, kind, role }))),
  ).filter((f) => existsSync(f));
  if (existing.length && !args.force) {
    throw new Error(`refusing to overwrite recorded histories (pass --force to re-record):\n  ${existing.join('\n  ')}`);
  }
  let cluster: Cluster | undefined;
  const services: ProvisioningService[] = [];
  try {
    cluster = await startCluster();
    const c = cluster;
    const staging = await startProvisioningService({ mode: 'async', fileRoot: c.root });
    const flaky = await startProvisioningService({ mode: 'async-fail', fileRoot: c.root });
    const silent = await startProvisioningService({ mode: 'never', fileRoot: c.root });
    services.push(staging, flaky, silent);

    makeAsset(c.root, 'assets/small.bin', ASSET_SMALL);
    makeAsset(c.root, 'assets/big.bin', ASSET_BIG);
    const fileAsset = (rel: string) => ({ endpointType: 'File' as const, endpoint: path.join(c.root, rel), endpointProperties: [] });
    const assets = { small: fileAsset('assets/small.bin'), big: fileAsset('assets/big.bin') };
    const http = (url: string) => [{ kind: 'http' as const, name: 'staging', url, side: 'destination' as const, endpointTypes: ['File'] }];
    const fileRoot = c.root;
    // in-cluster requests are admitted like DSP ones: one agreement per consumer and asset
    const agreements = (...consumers: string[]) =>
      Object.fromEntries(consumers.flatMap((consumer) => Object.keys(assets).map((assetId) => [`agreement-${consumer}-${assetId}`, { assetId, counterparty: consumer }])));
    await Promise.all([
      // consumer: its data plane provisions the destination itself (File destination provisioner, async)
      c.controlPlane({ connectorId: 'consumer', dataPlanes: [{ id: 'consumer-dp', transferTypes: ['File-PUSH'] }] }),
      c.dataPlane({ instanceId: 'consumer-dp', fileRoot, provisioners: [{ kind: 'file-destination' }] }),
      // provider: an HTTP provisioner answering 202 on the destination side, rate-limited
      c.controlPlane({ connectorId: 'provider', dataPlanes: [{ id: 'provider-dp', transferTypes: ['File-PUSH'] }], assets, agreements: agreements('consumer', 'flaky', 'silent') }),
      c.dataPlane({ instanceId: 'provider-dp', fileRoot, rateLimitBytesPerSec: RATE, provisioners: http(staging.url) }),
      // consumers whose provisioning service fails its first callback / never calls back
      c.controlPlane({ connectorId: 'flaky', dataPlanes: [{ id: 'flaky-dp', transferTypes: ['File-PUSH'] }] }),
      c.dataPlane({ instanceId: 'flaky-dp', fileRoot, provisioners: http(flaky.url) }),
      c.controlPlane({ connectorId: 'silent', dataPlanes: [{ id: 'silent-dp', transferTypes: ['File-PUSH'] }] }),
      // the data plane's own timers are long: the control plane's stale detection acts first
      c.dataPlane({ instanceId: 'silent-dp', fileRoot, provisioners: http(silent.url), dataFlow: { provisionTimeout: '10m', deprovisionTimeout: '10m' } }),
      // a pull: the provider's data plane issues EDRs from its public API
      c.controlPlane({ connectorId: 'pull-consumer', dataPlanes: [{ id: 'pull-consumer-dp', transferTypes: ['HttpData-PULL'] }] }),
      c.dataPlane({ instanceId: 'pull-consumer-dp', fileRoot, provisioners: [] }),
      c.controlPlane({ connectorId: 'pull-provider', dataPlanes: [{ id: 'pull-provider-dp', transferTypes: ['HttpData-PULL'] }], assets, agreements: agreements('pull-consumer') }),
      c.dataPlane({ instanceId: 'pull-provider-dp', fileRoot, provisioners: [], publicApi: { host: '127.0.0.1', port: 0 } }),
    ]);

    const request = (connectorId: string, processId: string, assetId: string, settings?: TransferRequest['settings']): TransferRequest => ({
      connectorId,
      processId,
      counterpartyAddress: inClusterAddress('provider'),
      agreementId: `agreement-${connectorId}-${assetId}`,
      assetId,
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: `out/${processId}` },
      ...(settings ? { settings } : {}),
    });
    /** The four workflows of a transfer between a consumer and the provider. */
    const both = (scenario: string, consumer: string, consumerPid: string, providerPid: string): Recording[] => [
      { scenario, kind: 'transfer-process', role: 'consumer', connectorId: consumer, processId: consumerPid },
      { scenario, kind: 'data-flow', role: 'consumer', connectorId: consumer, processId: consumerPid },
      { scenario, kind: 'transfer-process', role: 'provider', connectorId: 'provider', processId: providerPid },
      { scenario, kind: 'data-flow', role: 'provider', connectorId: 'provider', processId: providerPid },
    ];
    const expectState = async (connectorId: string, processId: string, expected: string, reason?: RegExp) => {
      const result = await c.ferry.result(connectorId, processId);
      if (result.state !== expected || (reason && !reason.test(result.reason))) {
        throw new Error(`${connectorId}/${processId} ended ${result.state} (${result.reason}), expected ${expected}${reason ? ` ${reason}` : ''}`);
      }
      const states = statesOf(await c.ferry.status(connectorId, processId));
      console.log(`  ${connectorId}/${processId}: ${states.join(' > ')}`);
    };

    const scenarios: Record<(typeof SCENARIOS)[number], () => Promise<Recording[]>> = {
      /** (a) async prepare on the consumer, async start on the provider, to COMPLETED. */
      async completed() {
        const pid = 'rec-completed';
        await c.ferry.startTransfer(request('consumer', pid, 'small'));
        const providerPid = await providerPidOf(c.ferry, 'consumer', pid);
        await expectState('consumer', pid, 'COMPLETED');
        await expectState('provider', providerPid, 'COMPLETED');
        return both('completed', 'consumer', pid, providerPid);
      },

      /** (b) consumer suspends, consumer resumes, provider terminates, while the big asset moves. */
      async 'suspend-resume-terminate'() {
        const pid = 'rec-suspend';
        await c.ferry.startTransfer(request('consumer', pid, 'big'));
        const providerPid = await providerPidOf(c.ferry, 'consumer', pid);
        await c.ferry.waitForState('consumer', pid, ['STARTED']);
        await c.ferry.waitForState('provider', providerPid, ['STARTED']);
        await c.ferry.suspend('consumer', pid, 'maintenance window');
        await c.ferry.waitForState('consumer', pid, ['SUSPENDED']);
        await c.ferry.waitForState('provider', providerPid, ['SUSPENDED']);
        await c.ferry.resume('consumer', pid);
        await c.ferry.waitForState('consumer', pid, ['STARTED']);
        await c.ferry.waitForState('provider', providerPid, ['STARTED']);
        const flow = await flowStatus(c.client, 'provider', providerPid);
        if (flow.state !== 'STARTED') throw new Error(`provider flow is ${flow.state} before terminate: the asset is too small or the rate too high`);
        await c.ferry.terminate('provider', providerPid, 'provider shuts down');
        await expectState('provider', providerPid, 'TERMINATED', /provider shuts down/);
        await expectState('consumer', pid, 'TERMINATED', /provider shuts down/);
        return both('suspend-resume-terminate', 'consumer', pid, providerPid);
      },

      /** (c) a provisioner that never calls back: stale waits, then TERMINATED; the provider is never asked. */
      async 'stale-wait'() {
        const pid = 'rec-stale';
        await c.ferry.startTransfer(request('silent', pid, 'small', { requestedTimeout: '1s', staleRetries: 1 }));
        await expectState('silent', pid, 'TERMINATED', /did not answer prepare/);
        return [
          { scenario: 'stale-wait', kind: 'transfer-process', role: 'consumer', connectorId: 'silent', processId: pid },
          // its deprovisioner never calls back either: the flow waits in DEPROVISION_REQUESTED
          { scenario: 'stale-wait', kind: 'data-flow', role: 'consumer', connectorId: 'silent', processId: pid, openIn: 'DEPROVISION_REQUESTED' },
        ];
      },

      /** (e) a pull: the provider issues an EDR, suspends (revoked), resumes (a new one); the consumer completes. */
      async pull() {
        const pid = 'rec-pull';
        await c.ferry.startTransfer({
          connectorId: 'pull-consumer',
          processId: pid,
          counterpartyAddress: inClusterAddress('pull-provider'),
          agreementId: 'agreement-pull-consumer-small',
          assetId: 'small',
          transferType: 'HttpData-PULL',
        });
        const providerPid = await providerPidOf(c.ferry, 'pull-consumer', pid);
        await c.ferry.waitForState('pull-consumer', pid, ['STARTED']);
        await c.ferry.suspend('pull-provider', providerPid, 'maintenance window');
        await c.ferry.waitForState('pull-consumer', pid, ['SUSPENDED']);
        await c.ferry.resume('pull-provider', providerPid);
        await c.ferry.waitForState('pull-consumer', pid, ['STARTED']);
        await c.ferry.waitForState('pull-provider', providerPid, ['STARTED']);
        await c.ferry.complete('pull-consumer', pid);
        await expectState('pull-consumer', pid, 'COMPLETED');
        await expectState('pull-provider', providerPid, 'COMPLETED');
        return [
          { scenario: 'pull', kind: 'transfer-process', role: 'consumer', connectorId: 'pull-consumer', processId: pid },
          { scenario: 'pull', kind: 'data-flow', role: 'consumer', connectorId: 'pull-consumer', processId: pid },
          { scenario: 'pull', kind: 'transfer-process', role: 'provider', connectorId: 'pull-provider', processId: providerPid },
          { scenario: 'pull', kind: 'data-flow', role: 'provider', connectorId: 'pull-provider', processId: providerPid },
        ];
      },

      /** (d) the first provisioning callback fails; prepare is re-sent after the backoff and succeeds. */
      async 'callback-retry'() {
        const pid = 'rec-retry';
        flaky.setMode('async-fail');
        await c.ferry.startTransfer(request('flaky', pid, 'small', { callbackRetries: 2, retryInitialInterval: '2s' }));
        await flaky.waitForCallbacks(1);
        flaky.setMode('async');
        const providerPid = await providerPidOf(c.ferry, 'flaky', pid);
        await expectState('flaky', pid, 'COMPLETED');
        await expectState('provider', providerPid, 'COMPLETED');
        const status = await c.ferry.status('flaky', pid);
        if (!status.history.some((h) => /failed prepare .*retry 1\/2/.test(h.note ?? ''))) throw new Error('the failed callback was not retried');
        return both('callback-retry', 'flaky', pid, providerPid);
      },
    };

    const recordings: Recording[] = [];
    for (const name of selected) {
      const run = scenarios[name];
      console.log(`scenario ${name}`);
      recordings.push(...(await run()));
    }

    // every history first, then the files: a failed run leaves the recorded set as it was
    const recorded: { file: string; json: string; note: string }[] = [];
    for (const rec of recordings) {
      const workflowId = rec.kind === 'transfer-process' ? transferProcessWorkflowId(rec.connectorId, rec.processId) : dataFlowWorkflowId(rec.connectorId, rec.processId);
      // decrypted: a recorded history replays without the random codec keys of this run
      const events = await decodePayloadsIn(await settledHistory(c, workflowId, rec), new EncryptionCodec(c.codecKeys));
      recorded.push({ file: fileOf(rec), json: `${historyToJSON({ events })}\n`, note: `${events.length} events${rec.openIn ? `, open in ${rec.openIn}` : ''}` });
    }
    for (const { file, json, note } of recorded) {
      writeFileSync(file, json);
      console.log(`  wrote ${path.relative(process.cwd(), file)} (${note})`);
    }
    console.log(`recorded ${recordings.length} histories in ${path.relative(process.cwd(), HISTORIES)}`);
  } finally {
    for (const s of services) await s.close().catch(() => undefined);
    await cluster?.shutdown();
  }
}

function fileOf(rec: Pick<Recording, 'scenario' | 'kind' | 'role'>): string {
  return path.join(HISTORIES, `${args.prefix}${rec.scenario}-${rec.kind}-${rec.role}.json`);
}

/**
 * The history of a workflow once nothing more will happen to it: closed, or — for a DataFlow that
 * stays open — in its expected waiting state with no workflow task outstanding and no new events.
 */
async function settledHistory(c: Cluster, workflowId: string, rec: Recording, timeoutMs = 90_000): Promise<NonNullable<History['events']>> {
  const handle = c.client.workflow.getHandle(workflowId);
  const deadline = Date.now() + timeoutMs;
  let lastCount = -1;
  let stableSince = Date.now();
  let lastState: string | undefined;
  for (;;) {
    const description = await handle.describe();
    const closed = description.status.name !== 'RUNNING';
    const history = await handle.fetchHistory();
    const events = history.events ?? [];
    if (closed) {
      if (rec.openIn) throw new Error(`${workflowId} closed (${description.status.name}); expected it to stay open in ${rec.openIn}`);
      return events;
    }
    if (events.length !== lastCount) {
      lastCount = events.length;
      stableSince = Date.now();
    }
    if (rec.openIn) {
      const state = await flowStatus(c.client, rec.connectorId, rec.processId).then((s) => s.state, () => undefined);
      lastState = state;
      // no workflow task scheduled or running and no activity pending: the workflow just waits
      const lastTask = [...events].reverse().find(
        (e) =>
          e.workflowTaskScheduledEventAttributes ||
          e.workflowTaskStartedEventAttributes ||
          e.workflowTaskCompletedEventAttributes ||
          e.workflowTaskFailedEventAttributes ||
          e.workflowTaskTimedOutEventAttributes,
      );
      const idle = !!lastTask?.workflowTaskCompletedEventAttributes && !description.raw.pendingActivities?.length;
      if (state === rec.openIn && idle && Date.now() - stableSince >= 2000) return events;
    }
    if (Date.now() > deadline) throw new Error(`${workflowId} did not ${rec.openIn ? `settle in ${rec.openIn}` : 'close'} within ${timeoutMs} ms${lastState ? ` (last state ${lastState})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
