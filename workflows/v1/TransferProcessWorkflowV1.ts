// Frozen: the workflow as it ran before the state-table rewrite, registered under its old type name. Histories
// recorded before it, and executions started before it, replay through this code. Never change it.
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControlPlaneActivities, DataPlaneCall } from '../../activities/controlPlane.js';
import { redact, type DataAddress } from '../../src/DataAddress.js';
import type { DataFlowInput, DataFlowResponse } from '../../src/DataFlow.js';
import { DSP_CONTEXT, type ProcessMessage } from '../../src/dsp.js';
import type { TransferSettings } from '../../src/settings.js';
import { assertTransition } from '../../src/StateMachine.js';
import {
  completeUpdate,
  counterpartyMessageUpdate,
  CounterpartyAttr,
  dataPlaneCallbackSignal,
  DataPlaneAttr,
  edrQuery,
  isPull,
  resumeUpdate,
  startUpdate,
  suspendUpdate,
  terminateUpdate,
  transferProcessStatusQuery,
  TransferRoleAttr,
  TransferStateAttr,
  TransferTypeAttr,
  type DataPlaneCallback,
  type DataPlaneRef,
  type ReasonArgs,
  type StateChange,
  type TransferProcessInput,
  type TransferProcessResult,
  type TransferProcessStatus,
} from '../../src/TransferProcess.js';
import { checkTransferProcessInput } from '../../src/inputCheck.js';
import {
  isFinalTransferProcessState,
  TRANSFER_PROCESS_TRANSITIONS,
  TransferProcessStates,
  type TransferProcessState,
} from '../../src/TransferProcessState.js';
import { backoffMs, message, now, toMs, waitUntil } from '../workflowUtil.js';

/**
 * The TransferProcess workflow: one per transfer process, consumer or provider. It drives the
 * data plane through its signaling calls and talks to the counterparty through DSP messages;
 * every state change goes through TRANSFER_PROCESS_TRANSITIONS.
 */

/** What the process is asked to do next, by a client, the counterparty or its data plane. */
type Command =
  | { kind: 'suspend'; reason: string; local: boolean }
  | { kind: 'resume'; local: boolean }
  | { kind: 'terminate'; reason: string; local: boolean }
  | { kind: 'start'; local: boolean }
  /** Who says the transfer is done: our data plane (the bytes arrived), a client, or the counterparty. */
  | { kind: 'completion'; by: 'dataPlane' | 'client' | 'counterparty' };

/** The outcome of a signaling call: done, or why not. */
type CallOutcome = { ok: true } | { ok: false; reason: string; interrupted?: boolean; dataPlaneFailed?: boolean };

/** patched() id: counterparty calls in flight are cancelled by a terminate command. */
const INTERRUPTIBLE_COUNTERPARTY_CALLS = 'interruptible-counterparty-calls';

const local = proxyLocalActivities<ControlPlaneActivities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 5 } });

export async function transferProcessWorkflowV1(raw: TransferProcessInput): Promise<TransferProcessResult> {
  const parsed = checkTransferProcessInput(raw);
  if ('problems' in parsed) throw ApplicationFailure.nonRetryable(`invalid transfer process input: ${parsed.problems.join('; ')}`, 'InvalidInput');
  const input = parsed.input;
  const { role, processId, connectorId } = input;
  const self = workflowInfo().workflowId;

  let state: TransferProcessState = 'INITIAL';
  const history: StateChange[] = [{ state, at: now() }];
  let counterpartyPid = input.counterpartyPid;
  let dataPlane: DataPlaneRef | undefined;
  let destination = input.dataDestination;
  let source: DataAddress | undefined;
  /** A pull's endpoint data reference: issued by our data plane (provider) or sent by the provider (consumer). Sealed. */
  let edr: DataAddress | undefined;
  const pull = isPull(input.transferType);
  /** The counterparty's start arrived (it may still be on its way through our data plane). */
  let startHeard = false;
  let reason: string | undefined;
  let error: string | undefined;
  const inbox: Command[] = [];
  const callbacks: DataPlaneCallback[] = [];

  const transition = (to: TransferProcessState, note?: string): void => {
    assertTransition('TransferProcess', TRANSFER_PROCESS_TRANSITIONS, state, to);
    state = to;
    history.push({ state, at: now(), ...(note ? { note } : {}) });
    upsertSearchAttributes({ [TransferStateAttr.name]: [state] });
    log.info('TransferProcess transition', { processId, state, note });
  };
  const note = (text: string): void => {
    history.push({ state, at: now(), note: text });
  };
  const pendingTerminate = (): boolean => inbox.some((c) => c.kind === 'terminate');
  const terminating = (): boolean =>
    pendingTerminate() || state === 'TERMINATING' || state === 'TERMINATION_REQUESTED' || isFinalTransferProcessState(state);

  setHandler(transferProcessStatusQuery, (): TransferProcessStatus => ({
    processId,
    role,
    state,
    stateCode: TransferProcessStates[state],
    connectorId,
    ...(counterpartyPid ? { counterpartyPid } : {}),
    counterpartyAddress: input.counterpartyAddress,
    transferType: input.transferType,
    agreementId: input.agreementId,
    assetId: input.assetId,
    dataFlowId: processId,
    ...(dataPlane ? { dataPlane } : {}),
    ...(destination ? { dataDestination: redact(destination) } : {}),
    ...(edr ? { edr: redact(edr) } : {}),
    ...(reason ? { reason } : {}),
    ...(error ? { error } : {}),
    history: [...history],
  }));
  setHandler(edrQuery, () => edr ?? null);

  // Client commands: the validator answers at once; the handler only queues the command.
  const refuse = (what: string): never => {
    throw new Error(`cannot ${what} transfer process ${processId} in state ${state}`);
  };
  setHandler(suspendUpdate, (args: ReasonArgs) => (inbox.push({ kind: 'suspend', reason: args?.reason ?? 'suspended by client', local: true }), state), {
    validator: (_: ReasonArgs) => void ((state === 'STARTED' && !terminating() && !inbox.some((c) => c.kind === 'suspend')) || refuse('suspend')),
  });
  setHandler(resumeUpdate, () => (inbox.push({ kind: 'resume', local: true }), state), {
    validator: () => void ((state === 'SUSPENDED' && !terminating() && !inbox.some((c) => c.kind === 'resume')) || refuse('resume')),
  });
  setHandler(terminateUpdate, (args: ReasonArgs) => (inbox.push({ kind: 'terminate', reason: args?.reason ?? 'terminated by client', local: true }), state), {
    validator: (_: ReasonArgs) => void (!terminating() || refuse('terminate')),
  });
  setHandler(startUpdate, () => (inbox.push({ kind: 'start', local: true }), state), {
    validator: () => void ((role === 'PROVIDER' && state === 'REQUESTED' && !terminating() && !inbox.some((c) => c.kind === 'start')) || refuse('start')),
  });
  setHandler(completeUpdate, () => (inbox.push({ kind: 'completion', by: 'client' }), state), {
    validator: () => void ((state === 'STARTED' && !terminating() && !inbox.some((c) => c.kind === 'completion')) || refuse('complete')),
  });

  // DSP messages from the counterparty, with the same rule: refuse what the state does not allow.
  setHandler(
    counterpartyMessageUpdate,
    (msg: ProcessMessage) => {
      switch (msg['@type']) {
        case 'TransferStartMessage':
          if (role === 'CONSUMER' && !counterpartyPid) counterpartyPid = msg.providerPid;
          // a consumer keeps the newest EDR at once: a provider re-issues it on every (re)start of a pull
          if (role === 'CONSUMER' && msg.dataAddress) edr = msg.dataAddress;
          startHeard = true;
          if (['REQUESTING', 'REQUESTED', 'SUSPENDED'].includes(state)) inbox.push({ kind: 'start', local: false });
          break;
        case 'TransferSuspensionMessage':
          if (state === 'STARTED') inbox.push({ kind: 'suspend', reason: `suspended by counterparty: ${msg.reason.join('; ') || 'no reason given'}`, local: false });
          break;
        case 'TransferCompletionMessage':
          inbox.push({ kind: 'completion', by: 'counterparty' });
          break;
        case 'TransferTerminationMessage':
          if (!terminating()) inbox.push({ kind: 'terminate', reason: `terminated by counterparty: ${msg.reason.join('; ') || 'no reason given'}`, local: false });
          break;
      }
      return state;
    },
    {
      validator: (msg: ProcessMessage) => {
        const ownPid = role === 'CONSUMER' ? msg.consumerPid : msg.providerPid;
        if (ownPid !== processId) throw new Error(`message for process ${ownPid} reached process ${processId}`);
        if (role === 'PROVIDER' && msg.consumerPid !== counterpartyPid) throw new Error(`unknown consumerPid ${msg.consumerPid}`);
        const live = !terminating();
        const ok: Record<ProcessMessage['@type'], boolean> = {
          // the provider's start may overtake the answer to our request (REQUESTING)
          TransferStartMessage:
            live &&
            (role === 'CONSUMER'
              ? ['REQUESTING', 'REQUESTED', 'SUSPENDED', 'RESUMING', 'STARTUP_REQUESTED', 'STARTING', 'STARTED']
              : ['SUSPENDED', 'STARTED']
            ).includes(state),
          TransferSuspensionMessage: live && ['STARTED', 'SUSPENDED'].includes(state),
          // either side may end a started transfer; a consumer's start may still be queued behind it
          TransferCompletionMessage:
            live &&
            (['STARTUP_REQUESTED', 'STARTING', 'STARTED'].includes(state) ||
              (role === 'CONSUMER' && ['REQUESTING', 'REQUESTED'].includes(state) && startHeard)),
          TransferTerminationMessage: state !== 'COMPLETED',
        };
        if (!ok[msg['@type']]) refuse(`accept ${msg['@type']} for`);
      },
    },
  );

  setHandler(dataPlaneCallbackSignal, (cb: DataPlaneCallback) => {
    if (cb.flowId !== processId) return; // not ours: ignore rather than fail the workflow
    if (cb.op !== 'transfer') callbacks.push(cb);
    // the end of the bytes may overtake our own STARTING -> STARTED: queue it, handled once STARTED
    else if (!terminating()) {
      inbox.push(cb.ok ? { kind: 'completion', by: 'dataPlane' } : { kind: 'terminate', reason: `transfer failed: ${cb.error ?? 'unknown error'}`, local: true });
    }
  });

  const s: TransferSettings = await local.transferSettings(input.settings);
  upsertSearchAttributes({
    [TransferStateAttr.name]: [state],
    [TransferRoleAttr.name]: [role],
    [TransferTypeAttr.name]: [input.transferType],
    [CounterpartyAttr.name]: [input.counterpartyAddress],
  });

  const retry = { maximumAttempts: s.activityMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' };
  const cp = proxyActivities<ControlPlaneActivities>({ startToCloseTimeout: '30s', retry });
  const flow = (): DataFlowInput => ({ flowId: processId, connectorId, processId, role, instanceId: dataPlane!.id, callbackWorkflowId: self });

  const counterpartyMessage = (type: 'TransferStartMessage' | 'TransferSuspensionMessage' | 'TransferCompletionMessage' | 'TransferTerminationMessage', why?: string): ProcessMessage => {
    const pids = role === 'CONSUMER' ? { consumerPid: processId, providerPid: counterpartyPid! } : { consumerPid: counterpartyPid!, providerPid: processId };
    const base = { '@context': [DSP_CONTEXT], ...pids };
    switch (type) {
      case 'TransferStartMessage':
        return { ...base, '@type': type, ...(role === 'PROVIDER' && edr ? { dataAddress: edr } : {}) };
      case 'TransferCompletionMessage':
        return { ...base, '@type': type };
      default:
        return { ...base, '@type': type, reason: why ? [why] : [] };
    }
  };
  /**
   * A counterparty call that a terminate command cuts short: its retries against an unreachable
   * counterparty (minutes, with backoff) would otherwise hold the terminate until they run out.
   */
  const interruptible = async <T>(call: () => Promise<T>): Promise<T> => {
    if (!patched(INTERRUPTIBLE_COUNTERPARTY_CALLS)) return call(); // histories from before: as they ran
    const scope = new CancellationScope();
    const watch = new CancellationScope();
    void watch.run(() => condition(pendingTerminate)).then(
      () => scope.cancel(),
      () => undefined,
    );
    try {
      return await scope.run(call);
    } finally {
      watch.cancel();
    }
  };
  const tell = async (type: Parameters<typeof counterpartyMessage>[0], why?: string): Promise<CallOutcome> => {
    const send = () => cp.sendToCounterparty({ address: input.counterpartyAddress, receiverPid: counterpartyPid!, message: counterpartyMessage(type, why) });
    try {
      // the termination message is what a terminate sends: it is never cut short itself
      await (type === 'TransferTerminationMessage' ? send() : interruptible(send));
      return { ok: true };
    } catch (e) {
      if (isCancellation(e)) return { ok: false, reason: 'terminate requested', interrupted: true };
      return { ok: false, reason: `counterparty did not take ${type}: ${message(e)}` };
    }
  };

  /** The address a data-plane call hands back: the consumer's destination (prepare) or the provider's EDR (start). */
  const took = (op: DataPlaneCallback['op'], address: DataAddress): void => {
    if (op === 'prepare') destination = address;
    else if (op === 'start' && role === 'PROVIDER' && pull) edr = address;
  };

  /**
   * One data-plane signaling call, the seed's pattern: if the data plane started async
   * (de)provisioning, wait in `requested` for its callback, with a timer. A failed callback
   * re-sends the call with backoff; a stale wait asks the data plane and re-sends; both bounded.
   */
  const callDataPlane = async (
    call: Exclude<DataPlaneCall, { op: 'complete' }>,
    requested: TransferProcessState,
    next: TransferProcessState,
  ): Promise<CallOutcome> => {
    const op = call.op === 'resume' ? 'start' : call.op;
    let failures = 0;
    let stale = 0;
    for (;;) {
      let response: DataFlowResponse;
      try {
        response = await cp.callDataPlane({ flow: flow(), taskQueue: dataPlane!.taskQueue, ...call });
      } catch (e) {
        return { ok: false, reason: `data plane ${dataPlane!.id} failed ${call.op}: ${message(e)}`, dataPlaneFailed: true };
      }
      if (!response.async) {
        if (response.dataAddress) took(op, response.dataAddress);
        if (state !== next) transition(next, `data plane answered ${call.op} at once (${response.state})`);
        return { ok: true };
      }
      if (state !== requested) transition(requested, `data plane is ${response.state}`);
      const outcome = await awaitCallback(op, toMs(s.requestedTimeout));
      if (outcome === 'interrupted') return { ok: false, reason: 'terminate requested', interrupted: true };
      if (outcome === 'timeout') {
        stale++;
        if (stale > s.staleRetries) {
          return { ok: false, reason: `data plane did not answer ${call.op} after ${stale} waits of ${s.requestedTimeout}`, dataPlaneFailed: true };
        }
        const seen = await cp.dataFlowState({ flow: flow() }).catch((e) => ({ found: false, error: message(e) }));
        note(`stale ${requested} (${stale}/${s.staleRetries}): data flow ${'state' in seen && seen.state ? seen.state : 'unreachable'}; asking again`);
        continue;
      }
      if (outcome.ok) {
        if (outcome.dataAddress) took(op, outcome.dataAddress);
        transition(next, `data plane called back: ${call.op} done`);
        return { ok: true };
      }
      failures++;
      error = outcome.error ?? `${call.op} failed`;
      if (failures > s.callbackRetries) return { ok: false, reason: `data plane failed ${call.op} ${failures} times: ${error}` };
      const wait = backoffMs(failures, s.retryInitialInterval, s.retryMaximumInterval);
      note(`data plane failed ${call.op} (${error}); retry ${failures}/${s.callbackRetries} in ${wait} ms`);
      await sleep(wait);
    }
  };

  /** Waits for the callback of `op`; a terminate command interrupts any wait but termination's own. */
  const awaitCallback = async (op: DataPlaneCallback['op'], timeout: number): Promise<DataPlaneCallback | 'timeout' | 'interrupted'> => {
    const interruptible = op !== 'terminate';
    const arrived = await condition(() => callbacks.some((c) => c.op === op) || (interruptible && pendingTerminate()), timeout);
    const i = callbacks.findIndex((c) => c.op === op);
    if (i >= 0) return callbacks.splice(0, i + 1).pop()!; // older callbacks of other calls are stale
    return arrived ? 'interrupted' : 'timeout';
  };

  /** Ends the process: the data plane releases what it holds, the counterparty is told, reason kept. */
  const terminate = async (why: string, opts: { tellCounterparty: boolean; dataPlaneAnswers: boolean }): Promise<void> => {
    reason = why;
    if (dataPlane && opts.dataPlaneAnswers) {
      const released = await callDataPlane({ op: 'terminate', message: { reason: why } }, 'TERMINATION_REQUESTED', 'TERMINATING');
      if (!released.ok) {
        error = released.reason;
        if (state !== 'TERMINATING') transition('TERMINATING', released.reason);
      }
    } else {
      if (dataPlane) {
        // The data plane is what failed: ask it to release without waiting on its answer.
        await cp.callDataPlane({ flow: flow(), taskQueue: dataPlane.taskQueue, op: 'terminate', message: { reason: why } }).catch(() => undefined);
      }
      transition('TERMINATING', why);
    }
    if (opts.tellCounterparty && counterpartyPid) {
      const told = await tell('TransferTerminationMessage', why);
      if (!told.ok) note(told.reason);
    }
    transition('TERMINATED', why);
  };
  /** A step failed: terminate with its reason, unless a terminate command is already waiting. */
  const fail = async (outcome: Extract<CallOutcome, { ok: false }>): Promise<void> => {
    if (outcome.interrupted) return;
    error = outcome.reason;
    await terminate(outcome.reason, { tellCounterparty: true, dataPlaneAnswers: !outcome.dataPlaneFailed });
  };

  const startMessage = () => ({
    transferType: input.transferType,
    ...(source ? { source } : {}),
    ...(role === 'PROVIDER' && destination ? { destination } : {}),
    // a pull's token is issued for the consumer; the consumer's data plane records the EDR it pulls with
    ...(role === 'PROVIDER' && pull ? { audience: input.counterpartyAddress } : {}),
    ...(role === 'CONSUMER' && edr ? { source: edr } : {}),
  });

  // ---- Opening: the seed's table, first two rows ----
  const opening = async (): Promise<void> => {
    try {
      if (role === 'PROVIDER') source = await cp.resolveAsset(input.assetId);
      dataPlane = await cp.selectDataPlane({ flowId: processId, transferType: input.transferType, ...(input.dataPlaneId ? { preferred: input.dataPlaneId } : {}) });
      upsertSearchAttributes({ [DataPlaneAttr.name]: [dataPlane.id] });
    } catch (e) {
      return fail({ ok: false, reason: `cannot open transfer: ${message(e)}` });
    }
    if (role === 'CONSUMER') {
      // INITIAL --prepare--> PREPARATION_REQUESTED | REQUESTING
      const prepared = await callDataPlane({ op: 'prepare', message: { transferType: input.transferType, ...(destination ? { destination } : {}) } }, 'PREPARATION_REQUESTED', 'REQUESTING');
      if (!prepared.ok) return fail(prepared);
      try {
        const { providerPid } = await interruptible(() => cp.requestTransfer({
          address: input.counterpartyAddress,
          message: {
            '@context': [DSP_CONTEXT],
            '@type': 'TransferRequestMessage',
            consumerPid: processId,
            agreementId: input.agreementId,
            assetId: input.assetId,
            format: input.transferType,
            ...(destination ? { dataAddress: destination } : {}),
            callbackAddress: `temporal://${connectorId}`,
          },
        }));
        counterpartyPid = providerPid;
      } catch (e) {
        if (isCancellation(e)) return fail({ ok: false, reason: 'terminate requested', interrupted: true });
        return fail({ ok: false, reason: `transfer request failed: ${message(e)}` });
      }
      transition('REQUESTED', `provider process ${counterpartyPid}`);
    } else if (input.startPolicy === 'manual') {
      // INITIAL --hold--> REQUESTED: an operator's start command lets it go on (handled below)
      transition('REQUESTED', 'waiting for a start command');
    } else {
      // INITIAL --start--> STARTUP_REQUESTED | STARTING
      const started = await callDataPlane({ op: 'start', message: startMessage() }, 'STARTUP_REQUESTED', 'STARTING');
      if (!started.ok) return fail(started);
      const told = await tell('TransferStartMessage');
      if (!told.ok) return fail(told);
      transition('STARTED');
    }
  };

  // ---- Commands once running ----
  const handle = async (cmd: Command): Promise<void> => {
    switch (cmd.kind) {
      case 'terminate':
        return terminate(cmd.reason, { tellCounterparty: cmd.local, dataPlaneAnswers: true });
      case 'suspend': {
        if (state !== 'STARTED') return note(`suspend ignored in ${state}`);
        // STARTED --suspend--> SUSPENSION_REQUESTED | SUSPENDING
        const done = await callDataPlane({ op: 'suspend', message: { reason: cmd.reason } }, 'SUSPENSION_REQUESTED', 'SUSPENDING');
        if (!done.ok) return fail(done);
        if (cmd.local) {
          const told = await tell('TransferSuspensionMessage', cmd.reason);
          if (!told.ok) return fail(told);
        }
        reason = cmd.reason;
        return transition('SUSPENDED', cmd.reason);
      }
      case 'resume':
      case 'start': {
        const resuming = state === 'SUSPENDED';
        if (!resuming && state !== 'REQUESTED') return note(`start ignored in ${state}`);
        if (cmd.kind === 'resume') transition('RESUMING');
        // the data plane starts (again), provisioning again where resources were released
        const started = await callDataPlane({ op: resuming ? 'resume' : 'start', message: startMessage() }, 'STARTUP_REQUESTED', 'STARTING');
        if (!started.ok) return fail(started);
        // Tell the counterparty when we started it, and always when a provider re-issued a pull's EDR.
        if (cmd.local || (role === 'PROVIDER' && pull && edr)) {
          const told = await tell('TransferStartMessage');
          if (!told.ok) return fail(told);
        }
        reason = undefined;
        return transition('STARTED');
      }
      case 'completion': {
        if (state !== 'STARTED') return note(`completion ignored in ${state}`);
        transition('COMPLETING', `completed by ${cmd.by === 'dataPlane' ? 'the data plane' : `the ${cmd.by}`}`);
        if (cmd.by !== 'dataPlane') {
          // our data plane releases what it provisioned (a pull's token is revoked); the bytes are delivered
          await cp
            .callDataPlane({ flow: flow(), taskQueue: dataPlane!.taskQueue, op: 'complete' })
            .catch((e) => note(`data plane did not take completion: ${message(e)}`));
        }
        if (cmd.by !== 'counterparty') {
          const told = await tell('TransferCompletionMessage');
          if (!told.ok) return fail(told);
        }
        reason = 'transfer completed';
        return transition('COMPLETED', reason);
      }
    }
  };

  await opening();
  const current = (): TransferProcessState => state; // read through a call: handlers change it
  while (!isFinalTransferProcessState(current())) {
    // Waiting states have timers: a consumer whose provider never starts, a suspension never resumed.
    const waiting = current();
    const timeout = waiting === 'REQUESTED' ? toMs(s.counterpartyTimeout) : waiting === 'SUSPENDED' ? toMs(s.suspendedTimeout) : undefined;
    const woke = await waitUntil(() => inbox.length > 0, timeout);
    if (!woke) {
      const why =
        waiting === 'SUSPENDED'
          ? `not resumed within ${s.suspendedTimeout}`
          : role === 'PROVIDER'
            ? `no start command within ${s.counterpartyTimeout}`
            : `provider did not start within ${s.counterpartyTimeout}`;
      inbox.push({ kind: 'terminate', reason: why, local: true });
    }
    // Once terminating, only the terminate command matters.
    const next = pendingTerminate() ? inbox.splice(inbox.findIndex((c) => c.kind === 'terminate'))[0]! : inbox.shift()!;
    await handle(next);
  }
  return { state, reason: reason ?? state };
}
