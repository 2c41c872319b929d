// Frozen: the workflow as it ran before the state-table rewrite, registered under its old type name. Histories
// recorded before it, and executions started before it, replay through this code. Never change it.
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  ActivityCancellationType,
  log,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { DataPlaneActivities } from '../../activities/dataPlane.js';
import type { DataAddress } from '../../src/DataAddress.js';
import { isUnissuedEdr, mergeRewrites, redact, unissuedEdr, withProperty } from '../../src/DataAddress.js';
import {
  completeFlowUpdate,
  dataFlowStatusQuery,
  DataFlowStateAttr,
  deprovisionReasonFor,
  EDR_PROVISIONER,
  prepareUpdate,
  provisionerCallbackSignal,
  pullAccessQuery,
  resumeFlowUpdate,
  startUpdate,
  suspendFlowUpdate,
  terminateFlowUpdate,
  type DataFlowInput,
  type DataFlowResponse,
  type DataFlowResult,
  type DataFlowStartMessage,
  type DataFlowPrepareMessage,
  type ReasonMessage,
  type ProvisionedResource,
  type ProvisionerCallback,
} from '../../src/DataFlow.js';
import { DATA_FLOW_TRANSITIONS, type DataFlowState } from '../../src/DataFlowState.js';
import type { DataFlowSettings } from '../../src/settings.js';
import { assertTransition } from '../../src/StateMachine.js';
import type { DataPlaneCallback } from '../../src/TransferProcess.js';
import type { ProvisionSide } from '../../src/Provisioner.js';
import { message, now, toMs, waitUntil } from '../workflowUtil.js';

/**
 * The DataFlow workflow: one per transfer on the data plane. Signaling calls are updates that
 * answer at once whether async (de)provisioning was triggered; the work itself runs here as
 * jobs, one at a time, and its outcome is called back to the TransferProcess.
 */

type Planned = { provisioner: string; side: ProvisionSide };
type Job =
  | { kind: 'provision'; op: 'prepare' | 'start'; planned: Planned[] }
  | { kind: 'deprovision'; op: 'suspend' | 'terminate' | 'complete' | 'fail' };

const settingsActivity = proxyLocalActivities<DataPlaneActivities>({
  startToCloseTimeout: '10s',
  retry: { maximumAttempts: 5 },
});

export async function dataFlowWorkflowV1(input: DataFlowInput): Promise<DataFlowResult> {
  const { flowId, role } = input;
  let settings: DataFlowSettings | undefined;
  let state: DataFlowState = 'RECEIVED';
  let reason: string | undefined;
  let error: string | undefined;
  const history: { state: DataFlowState; at: string; note?: string }[] = [{ state, at: now() }];
  /** The addresses as asked for, and as rewritten by provisioners. */
  const requested: { source?: DataAddress; destination?: DataAddress } = {};
  const effective: { source?: DataAddress; destination?: DataAddress } = {};
  const resources: ProvisionedResource[] = [];
  const jobs: Job[] = [];
  const callbacks = new Map<string, ProvisionerCallback>();
  let jobRunning = false;
  let interrupted = false; // a terminate arrived: stop waiting for provisioners
  let transferScope: CancellationScope | undefined;
  /** Settles when the last transfer run has stopped, so a resumed run never writes beside a cancelled one. */
  let transferSettled: Promise<void> = Promise.resolve();
  let transferRun = 0;
  let settling = 0; // a transfer's end is being reported: the flow is not over yet
  let terminated = false;
  let suspendedOutcome = false; // DEPROVISIONED after a suspension (resumable), not after an end
  const completedOutcome = (): boolean => history.some((h) => h.state === 'COMPLETED');
  let progress: { bytes?: number; sha256?: string } = {};
  let handlerLock = false;
  /** A provider's pull: no bytes are pushed; the consumer fetches through our public endpoint with an EDR. */
  let pull = false;

  const transition = (to: DataFlowState, note?: string): void => {
    assertTransition('DataFlow', DATA_FLOW_TRANSITIONS, state, to);
    state = to;
    history.push({ state, at: now(), ...(note ? { note } : {}) });
    upsertSearchAttributes({ [DataFlowStateAttr.name]: [state] });
    log.info('DataFlow transition', { flowId, state, note });
  };
  const unreleased = (): ProvisionedResource[] => resources.filter((r) => !r.released);
  const resourceOf = (p: Planned): ProvisionedResource | undefined => resources.find((r) => r.provisioner === p.provisioner && r.side === p.side);
  /** Provisioned, confirmed and not released yet. */
  const held = (p: Planned): boolean => {
    const r = resourceOf(p);
    return !!r && r.ready && !r.released;
  };
  const deprovisioning = (): boolean =>
    jobs.some((j) => j.kind === 'deprovision') ||
    (jobRunning && (state === 'DEPROVISIONING' || state === 'DEPROVISION_REQUESTED'));
  const provisioning = (): boolean => state === 'PROVISIONING' || state === 'PROVISION_REQUESTED';
  const respond = (async: boolean, dataAddress?: DataAddress): DataFlowResponse => ({
    state,
    async,
    ...(dataAddress ? { dataAddress } : {}),
  });
  /** Handlers run concurrently with each other; one at a time keeps each answer consistent. */
  const exclusive = async <T>(fn: () => Promise<T>): Promise<T> => {
    await condition(() => !handlerLock && settings !== undefined);
    handlerLock = true;
    try {
      return await fn();
    } finally {
      handlerLock = false;
    }
  };

  const acts = () =>
    proxyActivities<DataPlaneActivities>({
      startToCloseTimeout: '2m',
      retry: { maximumAttempts: settings!.provisionMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
    });
  const callbackActs = () =>
    proxyActivities<DataPlaneActivities>({
      startToCloseTimeout: '30s',
      retry: { maximumAttempts: settings!.callbackMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
    });

  const notify = async (callback: Omit<DataPlaneCallback, 'flowId'>): Promise<void> => {
    try {
      await callbackActs().notifyControlPlane({ workflowId: input.callbackWorkflowId, callback: { flowId, ...callback } });
    } catch (e) {
      // The control plane's stale detection asks again; until then this flow is FAILED.
      error = `callback to control plane failed: ${message(e)}`;
      if (state !== 'FAILED' && DATA_FLOW_TRANSITIONS[state].includes('FAILED')) transition('FAILED', error);
    }
  };

  /** Which provisioners apply to the addresses as asked for, less those whose resource is still held. */
  const plan = async (): Promise<Planned[]> =>
    (await settingsActivity.planProvisioning({ role, source: requested.source, destination: requested.destination })).filter(
      (p) => !held(p),
    );

  /** Starts the bytes moving (provider only; the consumer's data plane is passive for a push). */
  const startTransfer = (): void => {
    if (role !== 'PROVIDER') return;
    if (pull) {
      // the consumer pulls; without an issued EDR it could not
      if (!effective.destination || isUnissuedEdr(effective.destination)) void failFlow('cannot start pull: no EDR was issued (this data plane has no public API configured)', 'start');
      return;
    }
    const run = ++transferRun;
    const src = effective.source;
    const dst = effective.destination;
    if (!src || !dst) {
      void failFlow(`cannot start transfer: ${!src ? 'source' : 'destination'} address missing`, 'transfer');
      return;
    }
    const scope = new CancellationScope();
    transferScope = scope;
    const transferActs = proxyActivities<DataPlaneActivities>({
      startToCloseTimeout: '24h',
      heartbeatTimeout: settings!.transferHeartbeatTimeout,
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { maximumAttempts: settings!.transferMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
    });
    const previous = transferSettled;
    const running = scope.run(async () => {
      await previous;
      return transferActs.transfer({ flowId, source: src, destination: dst });
    });
    const settle = (fn: () => Promise<void>) => async () => {
      settling++;
      try {
        await fn();
      } finally {
        settling--;
      }
    };
    transferSettled = running.then(
      async (result) => settle(async () => {
        if (run !== transferRun || state !== 'STARTED') return;
        transferScope = undefined;
        progress = result;
        transition('COMPLETED', `${result.bytes} bytes, sha256 ${result.sha256}`);
        reason = 'transfer completed';
        await notify({ op: 'transfer', ok: true });
        jobs.push({ kind: 'deprovision', op: 'complete' });
      })(),
      async (e) => settle(async () => {
        if (run !== transferRun || isCancellation(e) || state !== 'STARTED') return;
        transferScope = undefined;
        await failFlow(`transfer failed: ${message(e)}`, 'transfer');
      })(),
    );
  };

  const failFlow = async (why: string, op: DataPlaneCallback['op']): Promise<void> => {
    error = why;
    reason = why;
    transition('FAILED', why);
    await notify({ op, ok: false, error: why });
  };

  /** Waits for the external callbacks of pending provisioners; false on timeout or terminate. */
  const awaitCallbacks = async (
    op: 'provision' | 'deprovision',
    pending: { provisioner: string; side: ProvisionSide }[],
    timeout: number,
  ): Promise<{ ok: true; results: ProvisionerCallback[] } | { ok: false; error: string }> => {
    const key = (p: { provisioner: string; side: string }) => `${op}:${p.provisioner}:${p.side}`;
    const arrived = await condition(
      () => pending.every((p) => callbacks.has(key(p))) || (op === 'provision' && interrupted),
      timeout,
    );
    if (op === 'provision' && interrupted) return { ok: false, error: 'terminated while waiting for provisioners' };
    if (!arrived) {
      const missing = pending.filter((p) => !callbacks.has(key(p))).map((p) => p.provisioner);
      return { ok: false, error: `${op}er ${missing.join(', ')} did not call back within ${timeout} ms` };
    }
    const results = pending.map((p) => callbacks.get(key(p))!);
    pending.forEach((p) => callbacks.delete(key(p)));
    const failed = results.find((r) => !r.ok);
    return failed ? { ok: false, error: `${op}er ${failed.provisioner} failed: ${failed.error ?? 'no reason given'}` } : { ok: true, results };
  };

  const runProvision = async (op: 'prepare' | 'start', planned: Planned[]): Promise<void> => {
    const rewrites: Record<ProvisionSide, DataAddress[]> = { source: [], destination: [] };
    const pending: { provisioner: string; side: ProvisionSide }[] = [];
    // Several provisioners run in parallel; each one's resource is recorded even if another fails.
    const outcomes = await Promise.allSettled(
      planned.map(async (p) => {
        const address = requested[p.side];
        if (!address) throw ApplicationFailure.nonRetryable(`no ${p.side} address to provision`);
        const result = await acts().provision({ flowId, role, provisioner: p.provisioner, side: p.side, address });
        const record = resourceOf(p);
        const ready = !result.pending;
        if (record) Object.assign(record, { resource: result.resource, ready, released: false });
        else resources.push({ provisioner: p.provisioner, side: p.side, resource: result.resource, ready, released: false });
        rewrites[p.side].push(result.address);
        if (result.pending) pending.push(p);
      }),
    );
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (interrupted) return; // terminate took over; its deprovision job releases what was made
    if (failure) return failFlow(`provisioning failed: ${message(failure.reason)}`, op);
    if (pending.length) {
      transition('PROVISION_REQUESTED', `waiting for ${pending.map((p) => p.provisioner).join(', ')}`);
      const waited = await awaitCallbacks('provision', pending, toMs(settings!.provisionTimeout));
      if (interrupted) return;
      if (!waited.ok) return failFlow(waited.error, op);
      for (const cb of waited.results) if (cb.address) rewrites[cb.side].push(cb.address);
      for (const p of pending) resourceOf(p)!.ready = true;
    }
    for (const side of ['source', 'destination'] as const) {
      const base = requested[side];
      // an unissued EDR only instructs its provisioner (audience): the issued one replaces it whole
      if (base && rewrites[side].length) effective[side] = mergeRewrites(isUnissuedEdr(base) ? { ...base, endpointProperties: [] } : base, rewrites[side]);
    }
    transition('PROVISIONED');
    if (op === 'start') {
      transition('STARTED');
      startTransfer();
    }
    await notify({ op, ok: true, ...(handsOut(op) && effective.destination ? { dataAddress: effective.destination } : {}) });
  };
  /** The calls whose answer carries our (rewritten) destination to the counterparty: prepare, and a pull's start (its EDR). */
  const handsOut = (op: 'prepare' | 'start'): boolean => op === 'prepare' || (op === 'start' && pull);

  const runDeprovision = async (op: 'suspend' | 'terminate' | 'complete' | 'fail'): Promise<void> => {
    if (op === 'terminate' && state !== 'TERMINATED' && DATA_FLOW_TRANSITIONS[state].includes('TERMINATED')) transition('TERMINATED', reason);
    // a cancelled transfer must have stopped writing before its destination is released
    await transferSettled;
    const outcome = state;
    const toRelease = unreleased();
    if (!toRelease.length) {
      if (op === 'suspend' || op === 'terminate') await notify({ op, ok: true });
      return;
    }
    transition('DEPROVISIONING');
    const reasonFor = deprovisionReasonFor(outcome === 'DEPROVISION_FAILED' ? 'TERMINATED' : outcome);
    const pending: { provisioner: string; side: ProvisionSide }[] = [];
    const outcomes = await Promise.allSettled(
      toRelease.map(async (r) => {
        const res = await acts().deprovision({ flowId, provisioner: r.provisioner, side: r.side, resource: r.resource, reason: reasonFor });
        if (res.pending) pending.push(r);
        else r.released = true;
      }),
    );
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    let failed = failure ? `deprovisioning failed: ${message(failure.reason)}` : undefined;
    if (!failed && pending.length) {
      transition('DEPROVISION_REQUESTED', `waiting for ${pending.map((p) => p.provisioner).join(', ')}`);
      const waited = await awaitCallbacks('deprovision', pending, toMs(settings!.deprovisionTimeout));
      if (waited.ok) pending.forEach((p) => (resourceOf(p)!.released = true));
      else failed = waited.error;
    }
    if (failed) {
      error = failed;
      transition('DEPROVISION_FAILED', failed);
    } else transition('DEPROVISIONED');
    if (op === 'suspend' || op === 'terminate') await notify({ op, ok: !failed, ...(failed ? { error: failed } : {}) });
  };

  /** Shared by start and resume: provision what is missing, then run. */
  const startOrResume = async (msg: DataFlowStartMessage): Promise<DataFlowResponse> => {
    if (state === 'STARTED') return respond(false, pull ? effective.destination : undefined);
    if (provisioning()) return respond(true);
    if (role === 'PROVIDER' && msg.transferType.endsWith('-PULL')) {
      // the destination of a pull is the EDR our provisioner issues (again after a release)
      pull = true;
      const request = unissuedEdr(flowId);
      msg = { ...msg, destination: msg.audience ? withProperty(request, 'audience', msg.audience) : request };
    }
    takeAddresses(msg);
    const needed = state === 'PROVISIONED' ? [] : await plan();
    error = undefined;
    if (!needed.length) {
      transition('STARTED', state === 'PROVISIONED' ? undefined : 'nothing to provision');
      startTransfer();
      return respond(false, pull ? effective.destination : undefined);
    }
    transition('PROVISIONING');
    jobs.push({ kind: 'provision', op: 'start', planned: needed });
    return respond(true);
  };
  /** The addresses a call brings; one rewritten by a still-held provision stays rewritten. */
  const takeAddresses = (msg: { source?: DataAddress; destination?: DataAddress }): void => {
    if (msg.source) requested.source = msg.source;
    if (msg.destination) requested.destination = msg.destination;
    for (const side of ['source', 'destination'] as const) if (!heldRewrite(side)) effective[side] = requested[side];
  };
  const heldRewrite = (side: ProvisionSide): boolean => resources.some((r) => r.side === side && r.ready && !r.released);

  const cancelTransfer = (): void => {
    transferRun++;
    transferScope?.cancel();
    transferScope = undefined;
  };

  const LIVE_FOR_PREPARE: DataFlowState[] = ['RECEIVED', 'FAILED', 'PROVISIONING', 'PROVISION_REQUESTED', 'PROVISIONED'];
  const STARTABLE: DataFlowState[] = ['RECEIVED', 'PROVISIONED', 'FAILED', 'PROVISIONING', 'PROVISION_REQUESTED', 'STARTED'];
  const RESUMABLE: DataFlowState[] = ['SUSPENDED', 'DEPROVISIONED', 'PROVISIONING', 'PROVISION_REQUESTED', 'STARTED'];
  const reject = (op: string) => {
    throw new Error(`${op} is not allowed in DataFlow state ${state}`);
  };

  setHandler(dataFlowStatusQuery, () => ({
    flowId,
    processId: input.processId,
    role,
    instanceId: input.instanceId,
    state,
    ...(effective.source ? { source: redact(effective.source) } : {}),
    ...(effective.destination ? { destination: redact(effective.destination) } : {}),
    resources: resources.map((r) => ({ ...r })),
    ...(progress.bytes !== undefined ? { bytesTransferred: progress.bytes } : {}),
    ...(progress.sha256 ? { sha256: progress.sha256 } : {}),
    ...(reason ? { reason } : {}),
    ...(error ? { error } : {}),
    history: [...history],
  }));

  setHandler(pullAccessQuery, () => ({
    state,
    liveTokenIds: resources.filter((r) => r.provisioner === EDR_PROVISIONER && r.ready && !r.released && r.resource.tokenId).map((r) => r.resource.tokenId!),
    ...(pull && effective.source ? { source: effective.source } : {}),
  }));

  setHandler(
    prepareUpdate,
    (msg: DataFlowPrepareMessage) =>
      exclusive(async () => {
        if (provisioning()) return respond(true);
        if (state === 'PROVISIONED') return respond(false, effective.destination);
        takeAddresses(msg);
        error = undefined;
        const planned = await plan();
        if (!planned.length) {
          transition('PROVISIONED', 'nothing to provision');
          return respond(false, effective.destination);
        }
        transition('PROVISIONING');
        jobs.push({ kind: 'provision', op: 'prepare', planned });
        return respond(true);
      }),
    { validator: (_: DataFlowPrepareMessage) => void (LIVE_FOR_PREPARE.includes(state) || reject('prepare')) },
  );

  setHandler(startUpdate, (msg: DataFlowStartMessage) => exclusive(() => startOrResume(msg)), {
    validator: (_: DataFlowStartMessage) => void (STARTABLE.includes(state) || reject('start')),
  });

  setHandler(
    resumeFlowUpdate,
    (msg: DataFlowStartMessage) =>
      exclusive(async () => {
        if (state === 'DEPROVISIONED' && !suspendedOutcome) reject('resume');
        return startOrResume(msg);
      }),
    { validator: (_: DataFlowStartMessage) => void (RESUMABLE.includes(state) || reject('resume')) },
  );

  setHandler(
    suspendFlowUpdate,
    (msg: ReasonMessage) =>
      exclusive(async () => {
        if (state === 'STARTED' || state === 'PROVISIONED') {
          cancelTransfer();
          transition('SUSPENDED', msg.reason);
          suspendedOutcome = true;
          if (!unreleased().length) return respond(false);
          jobs.push({ kind: 'deprovision', op: 'suspend' });
          return respond(true);
        }
        return respond(deprovisioning()); // repeated: still deprovisioning?
      }),
    {
      validator: (_: ReasonMessage) =>
        void (
          ['STARTED', 'PROVISIONED'].includes(state) ||
          (suspendedOutcome && ['SUSPENDED', 'DEPROVISIONING', 'DEPROVISION_REQUESTED', 'DEPROVISIONED'].includes(state)) ||
          reject('suspend')
        ),
    },
  );

  setHandler(terminateFlowUpdate, (msg: ReasonMessage) =>
    exclusive(async () => {
      if (state === 'DEPROVISION_FAILED') {
        jobs.push({ kind: 'deprovision', op: 'terminate' }); // a re-sent terminate retries the release
        return respond(true);
      }
      if (terminated || completedOutcome()) return respond(deprovisioning()); // repeated, or too late to matter
      cancelTransfer();
      interrupted = terminated = true;
      suspendedOutcome = false;
      reason = msg.reason ?? 'terminated by the control plane';
      if (DATA_FLOW_TRANSITIONS[state].includes('TERMINATED')) transition('TERMINATED', reason);
      // Nothing held and nothing being made: done now. Otherwise the job releases it and calls back.
      if (!unreleased().length && !jobRunning && !jobs.length) return respond(false);
      jobs.push({ kind: 'deprovision', op: 'terminate' });
      return respond(true);
    }),
  );

  setHandler(
    completeFlowUpdate,
    () =>
      exclusive(async () => {
        if (state === 'STARTED') {
          cancelTransfer();
          transition('COMPLETED', 'the provider reported completion');
          reason = 'transfer completed';
          jobs.push({ kind: 'deprovision', op: 'complete' });
        }
        return respond(false);
      }),
    { validator: () => void (['STARTED', 'COMPLETED', 'DEPROVISIONING', 'DEPROVISION_REQUESTED', 'DEPROVISIONED'].includes(state) || reject('complete')) },
  );

  setHandler(provisionerCallbackSignal, (cb: ProvisionerCallback) => {
    callbacks.set(`${cb.op}:${cb.provisioner}:${cb.side}`, cb);
  });

  settings = await settingsActivity.dataFlowSettings();
  upsertSearchAttributes({ [DataFlowStateAttr.name]: [state] });

  // The job loop: one job at a time; the flow ends once it is over and everything is released.
  const ended = (): boolean => (terminated || (completedOutcome() && !transferScope)) && !settling && !jobs.length && !unreleased().length;
  const IDLE: DataFlowState[] = ['RECEIVED', 'PROVISIONED', 'SUSPENDED', 'FAILED', 'DEPROVISIONED', 'DEPROVISION_FAILED'];
  while (!ended()) {
    // A state that waits on the control plane has a timer; any transition restarts it.
    const seen = history.length;
    const idle = !jobs.length && IDLE.includes(state);
    const woke = await waitUntil(() => jobs.length > 0 || ended() || history.length !== seen, idle ? toMs(settings.idleTimeout) : undefined);
    if (!woke) {
      // Nobody came back for this flow: end it rather than hold resources forever.
      interrupted = terminated = true;
      reason = `idle in ${state} for ${settings.idleTimeout}`;
      if (DATA_FLOW_TRANSITIONS[state].includes('TERMINATED')) transition('TERMINATED', reason);
      jobs.push({ kind: 'deprovision', op: 'fail' });
    }
    const job = jobs.shift();
    if (!job) continue;
    jobRunning = true;
    try {
      if (job.kind === 'provision') await runProvision(job.op, job.planned);
      else await runDeprovision(job.op);
    } finally {
      jobRunning = false;
    }
  }
  return { state, reason: reason ?? error ?? 'ended' };
}
