import {
  ActivityCancellationType,
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  condition,
  log,
  proxyActivities,
  proxyLocalActivities,
  metricMeter,
  patched,
  setCurrentDetails,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControlPlaneActivities, DataPlaneCall, OpenedTransfer } from '../activities/controlPlane.js';
import { redact, type DataAddress } from '../src/DataAddress.js';
import type { DataFlowInput, DataFlowResponse, DataFlowStartMessage } from '../src/DataFlow.js';
import { DSP_CONTEXT, type ProcessMessage, type ProcessMessageType, type TransferRequestMessage } from '../src/dsp.js';
import type { TransferSettings } from '../src/settings.js';
import { assertTransition, IllegalTransitionError } from '../src/StateMachine.js';
import {
  AgreementAttr,
  AssetAttr,
  completeUpdate,
  counterpartyMessageUpdate,
  CounterpartyAttr,
  dataPlaneCallbackSignal,
  DataPlaneAttr,
  edrQuery,
  isPull,
  requestUpdate,
  resumeUpdate,
  startUpdate,
  suspendUpdate,
  terminateUpdate,
  transferProcessStatusQuery,
  TransferRoleAttr,
  TransferStateAttr,
  TransferTypeAttr,
  TRANSFER_FAILED,
  transferLinks,
  type DataPlaneCallback,
  type DataPlaneRef,
  type ReasonArgs,
  type RequestAnswer,
  type StateChange,
  type TransferProcessInput,
  type TransferProcessResult,
  type TransferProcessStatus,
  type WatchAlarm,
} from '../src/TransferProcess.js';
import { checkTransferProcessInput } from '../src/inputCheck.js';
import { watchdogAlarmSignal } from '../src/Watchdog.js';
import {
  PEER_EVENTS,
  TRANSFER_PROCESS_TABLE,
  type TransferProcessAction,
  type TransferProcessEvent,
  type TransferProcessGuard,
} from '../src/TransferProcessTable.js';
import {
  isFinalTransferProcessState,
  TRANSFER_PROCESS_TRANSITIONS,
  TransferProcessStates,
  type TransferProcessState,
} from '../src/TransferProcessState.js';
import { Machine, refusal, Waits } from './machine.js';
import { backoffMs, message, now, toMs } from './workflowUtil.js';

/**
 * The TransferProcess workflow: one per transfer process, consumer or provider. It runs the table
 * in src/TransferProcessTable.ts: every client command, counterparty message, data-plane answer or
 * callback, timer and message outcome is an event, and the table says what it does in the current
 * state. The methods below are the table's actions, each a short step; every state change goes
 * through TRANSFER_PROCESS_TRANSITIONS.
 */

/** The workflow type `transferProcess` (src/ids.ts); the earlier code runs as `transferProcessWorkflow`. */
export async function transferProcess(raw: TransferProcessInput): Promise<TransferProcessResult> {
  const parsed = checkTransferProcessInput(raw);
  if ('problems' in parsed) throw ApplicationFailure.nonRetryable(`invalid transfer process input: ${parsed.problems.join('; ')}`, 'InvalidInput');
  const process = new TransferProcess(parsed.input);
  process.setup();
  return process.run();
}

type DataPlaneOp = DataPlaneCall['op'];

/** The messages this process sends. */
type Outbound = ProcessMessageType | 'TransferRequestMessage';

/** Where a finished data-plane call leads: a message to tell the counterparty, and the state after. */
interface Then {
  tell?: Outbound;
  state: TransferProcessState;
  note?: string;
  /** The provider completed meanwhile: once the data plane settled this call, the transfer completes. */
  complete?: true;
}

/** The data-plane call under way: sent, or awaited in its `*_REQUESTED` state. */
interface Call {
  op: DataPlaneOp;
  message?: DataFlowStartMessage | { reason?: string };
  /** Where the process waits if the data plane answers "async". */
  requested: TransferProcessState;
  /** Where it goes once the call is done. */
  next: TransferProcessState;
  then: Then;
  stale: number;
  failures: number;
  /** The activity is running (its answer is an event still to come). */
  sent: boolean;
  /** A callback that overtook the call's own answer: handled right after the answer. */
  early?: DataPlaneCallback;
}

/** How the process ends: why, whether the counterparty is told, and whether the release is awaited. */
interface Ending {
  reason: string;
  /** What the counterparty is told: the operator's words, or a generic reason with a reference. */
  told?: string;
  waitForRelease: boolean;
  /** Something failed here (not a termination someone asked for): the workflow closes as failed. */
  failed?: boolean;
}

/** Workflow metrics (through the worker's runtime): emitted live, never on replay. */
const metrics = {
  transitions: metricMeter.createCounter('ferry_transfer_transitions', 'transitions', 'TransferProcess state changes, by state and role'),
  stale: metricMeter.createCounter('ferry_stale_detections', 'waits', 'stale *_REQUESTED waits (the data plane did not call back in time)'),
  retries: metricMeter.createCounter('ferry_callback_retries', 'calls', 'data-plane calls re-sent after a failed callback'),
  defects: metricMeter.createCounter('ferry_workflow_defects', 'defects', 'illegal transitions refused (bugs)'),
};

/** Short states of work under way: not worth a search-attribute upsert of their own (see settled). */
const UNDER_WAY: TransferProcessState[] = ['INITIAL', 'REQUESTING', 'STARTING', 'SUSPENDING', 'RESUMING', 'COMPLETING', 'TERMINATING'];

const local = proxyLocalActivities<ControlPlaneActivities>({ startToCloseTimeout: '20s', retry: { maximumAttempts: 5 } });

class TransferProcess {
  private state: TransferProcessState = 'INITIAL';
  private readonly history: StateChange[] = [{ state: 'INITIAL', at: now() }];
  private readonly role;
  private readonly pull: boolean;
  private readonly self = workflowInfo().workflowId;
  private settings!: TransferSettings;
  private opened?: OpenedTransfer;
  private counterpartyPid: string | undefined;
  private dataPlane: DataPlaneRef | undefined;
  private destination: DataAddress | undefined;
  private source: DataAddress | undefined;
  /** A pull's endpoint data reference: issued by our data plane (provider) or sent by the provider (consumer). */
  private edr: DataAddress | undefined;
  private reason: string | undefined;
  private error: string | undefined;
  private readonly defects: string[] = [];
  private call: Call | undefined;
  private sending: { type: Outbound; then: TransferProcessState; note?: string } | undefined;
  private ending: Ending | undefined;
  private messageSeq = 0;
  private upserted: TransferProcessState | undefined;
  private dataPlaneUpserted = false;
  private readonly waits = new Waits();
  private readonly machine: Machine<TransferProcessState, TransferProcessEvent, TransferProcessAction, TransferProcessGuard>;

  constructor(private readonly input: TransferProcessInput) {
    this.role = input.role;
    this.pull = isPull(input.transferType);
    this.counterpartyPid = input.counterpartyPid;
    this.destination = input.dataDestination;
    this.machine = new Machine({
      table: TRANSFER_PROCESS_TABLE,
      label: input.processId,
      state: () => this.state,
      holds: (g) => (g === 'pull' ? this.pull : g === 'consumer' ? this.role === 'CONSUMER' : this.role === 'PROVIDER'),
      run: (action, data) => this.act(action, data),
      note: (text) => this.note(text),
      settled: () => this.settled(),
    });
  }

  // ---- setup: handlers, queries, search attributes ----

  setup(): void {
    const m = this.machine;
    setHandler(transferProcessStatusQuery, () => this.status());
    setHandler(edrQuery, () => this.edr ?? null);
    const ask = (event: TransferProcessEvent, data?: unknown) => m.ask(event, data) as Promise<TransferProcessState>;
    const valid = (event: TransferProcessEvent) => (_args?: unknown) => m.validate(event);
    setHandler(suspendUpdate, (a: ReasonArgs) => ask('client.suspend', a?.reason ?? 'suspended by client'), { validator: valid('client.suspend') });
    setHandler(terminateUpdate, (a: ReasonArgs) => ask('client.terminate', a?.reason ?? 'terminated by client'), { validator: valid('client.terminate') });
    setHandler(resumeUpdate, () => ask('client.resume'), { validator: valid('client.resume') });
    setHandler(startUpdate, () => ask('client.start'), { validator: valid('client.start') });
    setHandler(completeUpdate, () => ask('client.complete'), { validator: valid('client.complete') });
    setHandler(counterpartyMessageUpdate, (msg: ProcessMessage) => m.ask(PEER_EVENTS[msg['@type']], msg) as Promise<TransferProcessState>, {
      validator: (msg: ProcessMessage) => {
        const ownPid = this.role === 'CONSUMER' ? msg.consumerPid : msg.providerPid;
        if (ownPid !== this.input.processId) throw new Error(`message for process ${ownPid} reached process ${this.input.processId}`);
        if (this.role === 'PROVIDER' && msg.consumerPid !== this.counterpartyPid) throw new Error(`unknown consumerPid ${msg.consumerPid}`);
        m.validate(PEER_EVENTS[msg['@type']]);
      },
    });
    setHandler(requestUpdate, (msg: TransferRequestMessage) => m.ask('peer.request', msg) as Promise<RequestAnswer>);
    // the connector watchdog (src/Watchdog.ts): what it found about this STARTED transfer
    setHandler(watchdogAlarmSignal, (alarm: WatchAlarm) => m.post('watchdog.alarm', alarm));
    setHandler(dataPlaneCallbackSignal, (cb: DataPlaneCallback) => {
      if (cb.flowId !== this.input.processId) return; // not ours: ignore rather than fail the workflow
      m.post(cb.op === 'transfer' ? 'dataPlane.transferred' : 'dataPlane.calledBack', cb);
    });
    // the starter sets them (transferSearchAttributes); one started otherwise gets them here
    if (workflowInfo().typedSearchAttributes.get(TransferRoleAttr) === undefined) {
      upsertSearchAttributes([
        { key: TransferRoleAttr, value: this.role },
        { key: TransferTypeAttr, value: this.input.transferType },
        { key: CounterpartyAttr, value: this.input.counterpartyAddress },
        { key: AgreementAttr, value: this.input.agreementId },
        { key: AssetAttr, value: this.input.assetId },
      ]);
    } else this.upserted = 'INITIAL';
  }

  async run(): Promise<TransferProcessResult> {
    // settings, the provider's admission and asset, and the data plane: one local activity
    this.opened = await local.openTransfer({
      role: this.role,
      processId: this.input.processId,
      transferType: this.input.transferType,
      agreementId: this.input.agreementId,
      assetId: this.input.assetId,
      ...(this.input.counterpartyId ? { counterpartyId: this.input.counterpartyId } : {}),
      ...(this.input.dataDestination ? { dataDestination: this.input.dataDestination } : {}),
      ...(this.input.dataPlaneId ? { preferredDataPlane: this.input.dataPlaneId } : {}),
      ...(this.input.settings ? { settings: this.input.settings } : {}),
    });
    this.settings = this.opened.settings;
    this.source = this.opened.source;
    this.dataPlane = this.opened.dataPlane;

    // the first step before anything that came meanwhile: a terminate then finds a call to wait for
    this.begin();
    this.machine.open();
    await condition(() => isFinalTransferProcessState(this.state));
    await condition(allHandlersFinished);
    const reason = this.reason ?? this.state;
    // a failure shows in Temporal's failure views; an asked-for termination and a completion do not
    if (this.state === 'TERMINATED' && this.ending?.failed) {
      throw ApplicationFailure.create({ type: TRANSFER_FAILED, message: reason, nonRetryable: true, details: [{ state: this.state, reason }] });
    }
    return { state: this.state, reason };
  }

  /** The seed's first two rows: the consumer prepares its data plane, the provider starts its own. */
  private begin(): void {
    if (this.opened!.refusal) {
      // a request that waits for our answer (in-cluster) hears the refusal itself; a DSP consumer is told by a termination
      const answered = this.machine.holding('peer.request');
      return this.fail(`cannot open transfer: ${this.opened!.refusal}`, { tell: this.role === 'PROVIDER' && !answered });
    }
    if (this.role === 'CONSUMER') {
      // INITIAL --prepare--> PREPARATION_REQUESTED | REQUESTING, then the request
      return this.callDataPlane(
        { op: 'prepare', message: { transferType: this.input.transferType, ...(this.destination ? { destination: this.destination } : {}) } },
        'PREPARATION_REQUESTED',
        'REQUESTING',
        { tell: 'TransferRequestMessage', state: 'REQUESTED' },
      );
    }
    if (this.input.startPolicy === 'manual') return this.enter('REQUESTED', 'waiting for a start command');
    // INITIAL --start--> STARTUP_REQUESTED | STARTING, then the start message
    this.callDataPlane({ op: 'start', message: this.startMessage() }, 'STARTUP_REQUESTED', 'STARTING', { tell: 'TransferStartMessage', state: 'STARTED' });
  }

  // ---- the table's actions ----

  private act(action: TransferProcessAction, data: unknown): unknown {
    switch (action) {
      case 'admitRequest':
        return this.admitRequest(data as TransferRequestMessage);
      case 'approve':
        this.enter('STARTING', 'start command');
        return this.callDataPlane({ op: 'start', message: this.startMessage() }, 'STARTUP_REQUESTED', 'STARTING', { tell: 'TransferStartMessage', state: 'STARTED' });
      case 'startByPeer':
        return this.startByPeer(data as ProcessMessage);
      case 'takeStart':
        return this.takeStart(data as ProcessMessage);
      case 'suspend':
        return this.suspend(data as string, true);
      case 'suspendByPeer':
        return this.suspend(`suspended by counterparty: ${reasonsOf(data as ProcessMessage)}`, false);
      case 'resume':
        this.enter('RESUMING');
        return this.callDataPlane({ op: 'resume', message: this.startMessage() }, 'STARTUP_REQUESTED', 'STARTING', { tell: 'TransferStartMessage', state: 'STARTED' });
      case 'complete':
        return this.complete('the client', true);
      case 'completeByPeer':
        return this.complete('the counterparty', false);
      case 'completeWhileSuspending':
        return this.completeWhileSuspending();
      case 'bytesArrived':
        return this.bytesArrived(data as DataPlaneCallback);
      case 'terminate':
        return this.end({ reason: data as string, told: data as string, waitForRelease: true });
      case 'terminateByPeer':
        return this.end({ reason: `terminated by counterparty: ${reasonsOf(data as ProcessMessage)}`, waitForRelease: true });
      case 'deadlinePassed':
        return this.deadlinePassed();
      case 'answered':
        return this.answered(data as DataFlowResponse);
      case 'dataPlaneDown':
        return this.dataPlaneDown(data as string);
      case 'calledBack':
        return this.calledBack(data as DataPlaneCallback);
      case 'staleCheck':
        return this.staleCheck();
      case 'probed':
        return this.probed(data as { found: boolean; state?: string });
      case 'resend':
        return this.sendCall();
      case 'took':
        return this.took(data as { providerPid?: string } | undefined);
      case 'notTaken':
        return this.notTaken(data as { why: string; refused: boolean });
      case 'alarm':
        return this.alarm(data as WatchAlarm);
    }
  }

  /** A TransferRequestMessage (the first, through update-with-start, or a re-sent one): admitted, refused, or answered with the state. */
  private admitRequest(msg: TransferRequestMessage): RequestAnswer {
    if (this.opened?.refusal) throw refusal(this.opened.refusal);
    const same =
      msg.consumerPid === this.counterpartyPid &&
      msg.agreementId === this.input.agreementId &&
      msg.format === this.input.transferType &&
      (msg.assetId === undefined || msg.assetId === this.input.assetId);
    if (!same) throw refusal(`process ${this.input.processId} was requested with other parameters`);
    return { providerPid: this.input.processId, state: this.state };
  }

  /** The counterparty's start: the consumer starts its data plane; a suspended process resumes. */
  private startByPeer(msg: ProcessMessage): void {
    this.takeStart(msg);
    if (this.state === 'SUSPENDED') {
      this.enter('RESUMING', 'resumed by the counterparty');
      // a provider of a pull tells the consumer the EDR its data plane re-issued
      const then: Then = this.role === 'PROVIDER' && this.pull ? { tell: 'TransferStartMessage', state: 'STARTED' } : { state: 'STARTED' };
      return this.callDataPlane({ op: 'resume', message: this.startMessage() }, 'STARTUP_REQUESTED', 'STARTING', then);
    }
    this.enter('STARTING', `provider process ${this.counterpartyPid} started`);
    this.callDataPlane({ op: 'start', message: this.startMessage() }, 'STARTUP_REQUESTED', 'STARTING', { state: 'STARTED' });
  }

  /** STARTED --suspend--> SUSPENDING (the data plane is called) --> SUSPENSION_REQUESTED (async) | told --> SUSPENDED */
  private suspend(reason: string, local: boolean): void {
    this.reason = reason;
    this.enter('SUSPENDING', reason);
    const then: Then = local ? { tell: 'TransferSuspensionMessage', state: 'SUSPENDED', note: reason } : { state: 'SUSPENDED', note: reason };
    this.callDataPlane({ op: 'suspend', message: { reason } }, 'SUSPENSION_REQUESTED', 'SUSPENDING', then);
  }

  /** A start message as news: the provider's pid and, for a pull, the newest EDR. */
  private takeStart(msg: ProcessMessage): void {
    if (this.role !== 'CONSUMER' || msg['@type'] !== 'TransferStartMessage') return;
    this.counterpartyPid ??= msg.providerPid;
    if (msg.dataAddress) {
      if (this.edr && this.state !== 'REQUESTED' && this.state !== 'SUSPENDED') this.note('the provider sent a new EDR');
      this.edr = msg.dataAddress;
    }
  }

  /** Ends a started transfer as done: our data plane releases what it holds; the counterparty is told when we decided. */
  private complete(by: string, tell: boolean): void {
    this.enter('COMPLETING', `completed by ${by}`);
    this.reason = 'transfer completed';
    this.callDataPlane({ op: 'complete' }, 'COMPLETING', 'COMPLETING', tell ? { tell: 'TransferCompletionMessage', state: 'COMPLETED' } : { state: 'COMPLETED' });
  }

  /**
   * The provider's completion crossed our suspension, which it had not taken (or refused, being
   * already completing): for the protocol the transfer never stopped, so it completes. A
   * suspension message still on its way is given up; a data-plane call under way settles first.
   */
  private completeWhileSuspending(): void {
    this.note('the provider completed the transfer before it took our suspension');
    if (this.sending) {
      this.waits.stop('send');
      this.sending = undefined;
    }
    if (this.call) {
      this.call.then = { state: 'COMPLETED', complete: true };
      return;
    }
    this.complete('the counterparty', false);
  }

  /** A push's bytes are verified at the destination (or the transfer failed for good). */
  private bytesArrived(cb: DataPlaneCallback): void {
    if (!cb.ok) return this.fail(`transfer failed: ${cb.error ?? 'unknown error'}`, { tell: true });
    this.enter('COMPLETING', 'completed by the data plane: bytes verified');
    this.reason = 'transfer completed';
    // the data flow releases what it provisioned by itself once its bytes are delivered
    this.tell('TransferCompletionMessage', 'COMPLETED');
  }

  private deadlinePassed(): void {
    const s = this.settings;
    const why =
      this.state === 'SUSPENDED'
        ? `not resumed within ${s.suspendedTimeout}`
        : this.state === 'SUSPENDING'
          ? `the provider refused the suspension and did not end the transfer within ${s.requestedTimeout}`
          : this.role === 'PROVIDER'
          ? `no start command within ${s.counterpartyTimeout}`
          : `provider did not start within ${s.counterpartyTimeout}`;
    this.end({ reason: why, told: why, waitForRelease: true, failed: true });
  }

  private alarm(a: WatchAlarm): void {
    switch (a.kind) {
      case 'flowEnded':
        // the data flow's own news never reached us: act on what it says now
        if (a.completed && this.role === 'PROVIDER' && !this.pull) return this.bytesArrived({ flowId: this.input.processId, op: 'transfer', ok: true });
        return this.fail(`data flow ended in ${a.state} without telling the process${a.detail ? `: ${a.detail}` : ''}`, { tell: true });
      case 'flowGone':
        return this.fail(`data flow ${this.input.processId} is gone from data plane ${this.dataPlane?.id}`, { tell: true, dataPlaneFailed: true });
      case 'dataPlaneLost':
        return this.fail(`data plane ${this.dataPlane?.id} lost: ${a.detail}`, { tell: true, dataPlaneFailed: true });
      case 'peerEnded':
        // its message never reached us (or never will): the counterparty's state is its word
        if (a.state === 'COMPLETED') return this.complete('the counterparty (its completion message was lost)', false);
        return this.end({ reason: 'terminated by counterparty (its termination message was lost)', waitForRelease: true });
      case 'peerLost':
        return this.fail(`counterparty unreachable: ${a.detail}`, { tell: false });
    }
  }

  // ---- data-plane calls: the seed's pattern ----

  /**
   * One data-plane signaling call: if the data plane answers that it started async
   * (de)provisioning, wait in `requested` for its callback, with a stale timer; a failed
   * callback re-sends the call after a backoff; a stale wait asks the data plane and re-sends.
   */
  private callDataPlane(c: { op: DataPlaneOp; message?: Call['message'] }, requested: TransferProcessState, next: TransferProcessState, then: Then): void {
    this.call = { ...c, requested, next, then, stale: 0, failures: 0, sent: false };
    this.sendCall();
  }

  private sendCall(): void {
    const call = this.call!;
    call.sent = true;
    const retry = { maximumAttempts: this.settings.activityMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' };
    // a local activity: one marker in the history, and its answer comes in the same workflow task
    const acts = proxyLocalActivities<ControlPlaneActivities>({ startToCloseTimeout: '30s', retry, summary: `${call.op} on data plane ${this.dataPlane!.id}` });
    this.waits.call(
      'dataPlane',
      () => acts.callDataPlane({ flow: this.flow(), taskQueue: this.dataPlane!.taskQueue, ...(call as DataPlaneCall) }),
      (answer) => this.machine.post('dataPlane.answered', answer),
      (e) => this.machine.post('dataPlane.unreachable', message(e)),
    );
  }

  private answered(response: DataFlowResponse): void {
    const call = this.call!;
    call.sent = false;
    if (this.ending && call.op !== 'terminate') return this.beginTermination(); // a terminate waited for this answer
    if (this.ending && !this.ending.waitForRelease) {
      this.call = undefined;
      if (response.async) this.note('the data plane releases in the background; not awaited');
      return this.afterTerminateCall();
    }
    if (!response.async) {
      if (response.dataAddress) this.took_address(call.op, response.dataAddress);
      this.call = undefined;
      if (this.state !== call.next) this.enter(call.next, `data plane answered ${call.op} at once (${response.state})`);
      if (response.completed && call.op === 'suspend') this.note('the bytes were verified before the suspension reached the data plane: a resume completes the transfer');
      this.then(call.then);
      // a push whose bytes were verified before it was suspended: resumed, it is complete
      if (response.completed && call.op === 'resume' && this.state === 'STARTED' && this.role === 'PROVIDER' && !this.pull) {
        this.bytesArrived({ flowId: this.input.processId, op: 'transfer', ok: true });
      }
      return;
    }
    if (this.state !== call.requested) this.enter(call.requested, `data plane is ${response.state}`);
    this.waits.timer('stale', toMs(this.settings.requestedTimeout), `stale timer: ${call.requested}`, () => this.machine.post('timer.stale'));
    if (call.early) {
      const cb = call.early;
      call.early = undefined;
      this.calledBack(cb);
    }
  }

  private dataPlaneDown(why: string): void {
    const call = this.call!;
    this.call = undefined;
    const reason = `data plane ${this.dataPlane!.id} failed ${call.op}: ${why}`;
    if (call.op === 'complete') {
      // the transfer is done either way; the data flow releases on its own timers
      this.note(`${reason}; its resources are released when the data flow's idle timer fires`);
      return this.then(call.then);
    }
    if (this.ending) {
      // the release cannot be confirmed: say so and end
      this.error = reason;
      return this.afterTerminateCall(reason);
    }
    this.fail(reason, { tell: true, dataPlaneFailed: true });
  }

  private calledBack(cb: DataPlaneCallback): void {
    const call = this.call;
    if (!call || callbackOp(call.op) !== cb.op) return this.note(`callback of ${cb.op} ignored: waiting for ${call ? callbackOp(call.op) : 'nothing'}`);
    // the callback overtook the call's answer (both came in one activation): the answer first, so
    // the history shows the seed's row (…_REQUESTED, then on) whatever the timing
    if (call.sent) {
      call.early = cb;
      return;
    }
    for (const w of ['stale', 'retry', 'probe'] as const) this.waits.stop(w);
    if (cb.ok) {
      if (cb.dataAddress) this.took_address(call.op, cb.dataAddress);
      this.call = undefined;
      this.enter(call.next, `data plane called back: ${call.op} done`);
      return this.then(call.then);
    }
    call.failures++;
    this.error = cb.error ?? `${call.op} failed`;
    if (call.failures > this.settings.callbackRetries) {
      this.call = undefined;
      const reason = `data plane failed ${call.op} ${call.failures} times: ${this.error}`;
      if (call.op === 'terminate') return this.afterTerminateCall(reason);
      return this.fail(reason, { tell: true });
    }
    const wait = backoffMs(call.failures, this.settings.retryInitialInterval, this.settings.retryMaximumInterval);
    this.note(`data plane failed ${call.op} (${this.error}); retry ${call.failures}/${this.settings.callbackRetries} in ${wait} ms`);
    metrics.retries.add(1, { op: call.op, role: this.role });
    this.waits.timer('retry', wait, `retry ${call.op} (${call.failures}/${this.settings.callbackRetries})`, () => this.machine.post('timer.retry'));
  }

  private staleCheck(): void {
    const call = this.call!;
    call.stale++;
    metrics.stale.add(1, { op: call.op, role: this.role });
    if (call.stale > this.settings.staleRetries) {
      this.call = undefined;
      const reason = `data plane did not answer ${call.op} after ${call.stale} waits of ${this.settings.requestedTimeout}`;
      if (call.op === 'terminate') return this.afterTerminateCall(reason);
      return this.fail(reason, { tell: true, dataPlaneFailed: true });
    }
    const acts = proxyLocalActivities<ControlPlaneActivities>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 3 }, summary: `ask data plane ${this.dataPlane!.id} about a stale ${call.op}` });
    this.waits.call(
      'probe',
      () => acts.dataFlowState({ flow: this.flow() }),
      (seen) => this.machine.post('stale.probed', seen),
      () => this.machine.post('stale.probed', { found: false }),
    );
  }

  private probed(seen: { found: boolean; state?: string }): void {
    const call = this.call!;
    this.note(`stale ${this.state} (${call.stale}/${this.settings.staleRetries}): data flow ${seen.state ?? 'unreachable'}; asking again`);
    this.sendCall();
  }

  /** Where a finished call leads: tell the counterparty, or go straight to the next state. */
  private then(then: Then): void {
    if (then.complete) return this.complete('the counterparty', false);
    if (then.state === 'TERMINATED') return this.tellOrEnd(); // released: now the counterparty hears it (or not)
    if (then.tell) return this.tell(then.tell, then.state, then.note);
    this.enter(then.state, then.note);
  }

  private took_address(op: DataPlaneOp, address: DataAddress): void {
    if (op === 'prepare') this.destination = address;
    else if ((op === 'start' || op === 'resume') && this.role === 'PROVIDER' && this.pull) this.edr = address;
  }

  // ---- messages to the counterparty ----

  private tell(type: Outbound, then: TransferProcessState, note?: string): void {
    this.sending = { type, then, ...(note ? { note } : {}) };
    const messageId = `${this.self}/${++this.messageSeq}`;
    const budget = this.settings.counterpartyRetryBudget;
    // A regular activity, never a local one: the counterparty's answer waits for its workflow task,
    // and a local activity holds ours open, so two processes telling each other at once would each
    // wait for the other until their workflow tasks time out.
    const acts = proxyActivities<ControlPlaneActivities>({
      startToCloseTimeout: '1m',
      scheduleToCloseTimeout: budget,
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
      cancellationType: ActivityCancellationType.TRY_CANCEL,
      summary: `${type} to ${this.input.counterpartyAddress}`,
    });
    const run =
      type === 'TransferRequestMessage'
        ? () => acts.requestTransfer({ address: this.input.counterpartyAddress, message: this.requestMessage(), messageId })
        : () =>
            acts.sendToCounterparty({
              address: this.input.counterpartyAddress,
              receiverPid: this.counterpartyPid!,
              message: this.processMessage(type),
              messageId,
              // the bound counterparty's credentials go with the message
              ...(this.input.counterpartyId ? { counterpartyId: this.input.counterpartyId } : {}),
            });
    this.waits.call(
      'send',
      run as () => Promise<{ providerPid?: string } | void>,
      (answer) => this.machine.post('counterparty.took', answer ?? undefined),
      (e) => this.machine.post('counterparty.unreachable', { why: message(e), refused: refusedByCounterparty(e) }),
      // the termination message is the last word: a terminate never cuts it short
      { cancellable: type !== 'TransferTerminationMessage' },
    );
  }

  private took(answer: { providerPid?: string } | undefined): void {
    const sent = this.sending!;
    this.sending = undefined;
    if (sent.type === 'TransferRequestMessage') this.counterpartyPid = answer?.providerPid;
    this.enter(sent.then, sent.type === 'TransferRequestMessage' ? `provider process ${this.counterpartyPid}` : sent.note);
  }

  private notTaken({ why, refused }: { why: string; refused: boolean }): void {
    const sent = this.sending!;
    this.sending = undefined;
    const what = `counterparty ${refused ? 'refused' : 'did not take'} ${sent.type}: ${why}`;
    switch (sent.type) {
      case 'TransferTerminationMessage':
        this.note(what);
        return this.enter('TERMINATED', this.reason);
      case 'TransferCompletionMessage':
        if (refused) {
          // it ended the transfer otherwise (it was terminating): both sides end TERMINATED
          return this.end({ reason: what, waitForRelease: true });
        }
        // unreachable: the bytes were delivered; never TERMINATED for want of telling the counterparty
        this.error = what;
        return this.enter('COMPLETED', `${this.reason}; ${what}`);
      case 'TransferRequestMessage':
        return this.fail(`transfer request failed: ${why}`, { tell: false });
      case 'TransferSuspensionMessage':
        if (refused && this.role === 'CONSUMER' && patched(AWAIT_PROVIDER_AFTER_REFUSAL)) {
          // most likely the provider is completing (its completion crossed our suspension) or
          // terminating: its message follows, and decides; bounded by a timer
          this.error = what;
          this.note(`${what}; waiting up to ${this.settings.requestedTimeout} for the provider to end the transfer`);
          return this.waits.timer('deadline', toMs(this.settings.requestedTimeout), `provider's end after a refused suspension (${this.settings.requestedTimeout})`, () =>
            this.machine.post('timer.deadline'),
          );
        }
        return this.fail(what, { tell: patched(TELL_AFTER_LOST_MESSAGE) });
      default:
        // given up on, it may still have been taken (its answer lost, or late past the budget): the
        // counterparty hears the termination too, or it would wait for a message that never comes
        return this.fail(what, { tell: patched(TELL_AFTER_LOST_MESSAGE) });
    }
  }

  // ---- ending ----

  /** A step failed: the process terminates with the reason; the counterparty hears a generic one. */
  private fail(reason: string, opts: { tell: boolean; dataPlaneFailed?: boolean }): void {
    this.error = reason;
    const ref = uuid4().slice(0, 8);
    this.end({
      reason: opts.tell ? `${reason} (ref ${ref})` : reason,
      ...(opts.tell ? { told: `the ${this.role === 'PROVIDER' ? 'provider' : 'consumer'} could not go on with the transfer (ref ${ref})` } : {}),
      waitForRelease: !opts.dataPlaneFailed,
      failed: true,
    });
  }

  /** Ends the process: the data plane releases what it holds, the counterparty is told, the reason kept. */
  private end(ending: Ending): void {
    if (this.ending) return this.note(`already ending: ${ending.reason}`);
    this.ending = ending;
    this.reason = ending.reason;
    for (const w of ['stale', 'retry', 'deadline'] as const) this.waits.stop(w);
    if (this.sending && this.sending.type !== 'TransferTerminationMessage') {
      this.waits.stop('send');
      this.sending = undefined;
    }
    // a data-plane call under way is never cut: its answer comes within its retries, then we go on
    if (this.call?.sent) return;
    this.call = undefined;
    this.beginTermination();
  }

  private beginTermination(): void {
    this.call = undefined;
    if (this.state !== 'TERMINATING') this.enter('TERMINATING', this.reason);
    if (!this.dataPlane) return this.tellOrEnd();
    this.callDataPlane({ op: 'terminate', message: { reason: this.reason } }, 'TERMINATION_REQUESTED', 'TERMINATING', { state: 'TERMINATED' });
  }

  /** The terminate call is over (released, or given up on with a reason). */
  private afterTerminateCall(problem?: string): void {
    if (problem) {
      this.error = problem;
      this.note(`release not confirmed: ${problem}`);
    }
    if (this.state !== 'TERMINATING') this.enter('TERMINATING');
    this.tellOrEnd();
  }

  private tellOrEnd(): void {
    if (this.ending?.told !== undefined && this.counterpartyPid) return this.tell('TransferTerminationMessage', 'TERMINATED');
    this.enter('TERMINATED', this.reason);
  }

  // ---- states, notes, status ----

  private enter(to: TransferProcessState, note?: string): void {
    const from = this.state;
    try {
      assertTransition('TransferProcess', TRANSFER_PROCESS_TRANSITIONS, from, to);
    } catch (e) {
      if (!(e instanceof IllegalTransitionError)) throw e;
      // a bug: keep the process alive and make it loud (status, log); the model tests look for these
      this.defects.push(`${e.message} (${note ?? 'no note'})`);
      log.error('TransferProcess defect', { processId: this.input.processId, defect: e.message });
      metrics.defects.add(1, { workflow: 'TransferProcess' });
      return;
    }
    this.state = to;
    this.history.push({ state: to, at: now(), ...(note ? { note } : {}) });
    log.info('TransferProcess transition', { processId: this.input.processId, state: to, note });
    metrics.transitions.add(1, { state: to, role: this.role });
    if (from === 'REQUESTED' || from === 'SUSPENDED' || from === 'SUSPENDING') this.waits.stop('deadline');
    this.onEntry(to);
  }

  /** What waits begin with a state: its timers and watchdog. */
  private onEntry(state: TransferProcessState): void {
    const s = this.settings;
    if (state === 'REQUESTED') this.waits.timer('deadline', toMs(s.counterpartyTimeout), `counterparty timeout (${s.counterpartyTimeout})`, () => this.machine.post('timer.deadline'));
    else if (state === 'SUSPENDED') this.waits.timer('deadline', toMs(s.suspendedTimeout), `suspended timeout (${s.suspendedTimeout})`, () => this.machine.post('timer.deadline'));
    else if (state === 'STARTED') this.reason = undefined; // running again: an earlier suspension's reason no longer applies
  }

  private note(text: string): void {
    this.history.push({ state: this.state, at: now(), note: text });
  }

  /**
   * The four workflows of a transfer, linked in the memo (the Web UI shows it). The starter sets
   * what it knows (transferLinks); the consumer adds the provider's once its request was answered.
   */
  private linked = !!workflowInfo().memo?.counterpartyWorkflowId || !!workflowInfo().memo?.counterpartyProcess;
  private link(): void {
    if (this.linked || !this.counterpartyPid) return;
    this.linked = true;
    upsertMemo(transferLinks({ ...this.input, counterpartyPid: this.counterpartyPid }));
  }

  /** After each batch of events: one search-attribute upsert per state change, and the current details. */
  private settled(): void {
    // Search attributes follow the states a process waits or rests in; the under-way states
    // (…ING) last a moment and show in status and current details only: one upsert each saved.
    if (this.upserted !== this.state && !UNDER_WAY.includes(this.state)) {
      const dataPlane = this.dataPlane && !this.dataPlaneUpserted ? [{ key: DataPlaneAttr, value: this.dataPlane.id }] : [];
      this.upserted = this.state;
      this.dataPlaneUpserted = !!this.dataPlane;
      upsertSearchAttributes([{ key: TransferStateAttr, value: this.state }, ...dataPlane]);
    }
    this.link();
    setCurrentDetails(`${this.state}${this.waitingFor() ? ` — ${this.waitingFor()}` : ''}`);
  }

  private waitingFor(): string | undefined {
    const at = (name: string) => this.waits.firesAt(name)?.toISOString().replace('T', ' ').slice(0, 19);
    const call = this.call;
    if (call?.sent) return `calling ${call.op} on data plane ${this.dataPlane?.id}`;
    if (call && this.waits.running('retry')) return `data plane ${this.dataPlane?.id} failed ${call.op}; re-sending it at ${at('retry')} (${call.failures}/${this.settings.callbackRetries})`;
    if (call) return `waiting for data plane ${this.dataPlane?.id} to call back ${callbackOp(call.op)}; stale check at ${at('stale') ?? 'now'} (${call.stale + 1}/${this.settings.staleRetries + 1})`;
    if (this.sending) return `telling the counterparty (${this.sending.type}), retried until ${this.settings.counterpartyRetryBudget} have passed`;
    switch (this.state) {
      case 'REQUESTED':
        return `${this.role === 'PROVIDER' ? 'waiting for a start command' : 'waiting for the provider to start'}; ends TERMINATED at ${at('deadline')}`;
      case 'SUSPENDED':
        return `resumes, or ends TERMINATED at ${at('deadline')}`;
      case 'STARTED':
        return `${this.pull ? 'the consumer pulls' : 'bytes moving'}; the connector's watchdog checks it`;
      default:
        return this.reason;
    }
  }

  private status(): TransferProcessStatus {
    const waitingFor = this.waitingFor();
    return {
      processId: this.input.processId,
      role: this.role,
      state: this.state,
      stateCode: TransferProcessStates[this.state],
      connectorId: this.input.connectorId,
      ...(this.counterpartyPid ? { counterpartyPid: this.counterpartyPid } : {}),
      counterpartyAddress: this.input.counterpartyAddress,
      ...(this.input.counterpartyId ? { counterpartyId: this.input.counterpartyId } : {}),
      transferType: this.input.transferType,
      agreementId: this.input.agreementId,
      assetId: this.input.assetId,
      dataFlowId: this.input.processId,
      ...(this.dataPlane ? { dataPlane: this.dataPlane } : {}),
      ...(this.destination ? { dataDestination: redact(this.destination) } : {}),
      ...(this.edr ? { edr: redact(this.edr) } : {}),
      ...(this.reason ? { reason: this.reason } : {}),
      ...(this.error ? { error: this.error } : {}),
      ...(waitingFor ? { waitingFor } : {}),
      ...(this.defects.length ? { defects: [...this.defects] } : {}),
      history: [...this.history],
    };
  }

  // ---- messages and data-plane inputs ----

  private flow(): DataFlowInput {
    const { processId, connectorId, transferType, agreementId, assetId } = this.input;
    return {
      flowId: processId,
      connectorId,
      processId,
      role: this.role,
      instanceId: this.dataPlane!.id,
      callbackWorkflowId: this.self,
      // a DPS data plane is told what the transfer is about; the call cannot ask us back (it runs in our workflow task)
      transfer: {
        transferType,
        agreementId,
        assetId,
        counterpartyAddress: this.input.counterpartyAddress,
        ...(this.input.counterpartyId ? { counterpartyId: this.input.counterpartyId } : {}),
      },
    };
  }

  private startMessage(): DataFlowStartMessage {
    return {
      transferType: this.input.transferType,
      ...(this.source ? { source: this.source } : {}),
      ...(this.role === 'PROVIDER' && this.destination ? { destination: this.destination } : {}),
      // a pull's token is issued for the consumer; the consumer's data plane records the EDR it pulls with
      ...(this.role === 'PROVIDER' && this.pull ? { audience: this.input.counterpartyAddress } : {}),
      ...(this.role === 'CONSUMER' && this.edr ? { source: this.edr } : {}),
    };
  }

  private requestMessage(): TransferRequestMessage {
    return {
      '@context': [DSP_CONTEXT],
      '@type': 'TransferRequestMessage',
      consumerPid: this.input.processId,
      agreementId: this.input.agreementId,
      assetId: this.input.assetId,
      format: this.input.transferType,
      ...(this.destination ? { dataAddress: this.destination } : {}),
      callbackAddress: `temporal://${this.input.connectorId}`,
    };
  }

  private processMessage(type: ProcessMessageType): ProcessMessage {
    const pids =
      this.role === 'CONSUMER'
        ? { consumerPid: this.input.processId, providerPid: this.counterpartyPid! }
        : { consumerPid: this.counterpartyPid!, providerPid: this.input.processId };
    const base = { '@context': [DSP_CONTEXT], ...pids };
    switch (type) {
      case 'TransferStartMessage':
        return { ...base, '@type': type, ...(this.role === 'PROVIDER' && this.edr ? { dataAddress: this.edr } : {}) };
      case 'TransferCompletionMessage':
        return { ...base, '@type': type };
      case 'TransferTerminationMessage':
        return { ...base, '@type': type, reason: this.ending?.told ? [this.ending.told] : [] };
      case 'TransferSuspensionMessage':
        return { ...base, '@type': type, reason: this.reason ? [this.reason] : [] };
    }
  }
}

/** Patch: a start or suspension message given up on is followed by a termination message (before: none). */
const TELL_AFTER_LOST_MESSAGE = 'tell-after-lost-message';
/** Patch: a consumer whose suspension the provider refused waits (bounded) for the provider's completion or termination (before: TERMINATED at once). */
const AWAIT_PROVIDER_AFTER_REFUSAL = 'await-provider-after-refused-suspension';

/** The callback that answers a call: a resume is answered as a start. */
const callbackOp = (op: DataPlaneOp): DataPlaneCallback['op'] => (op === 'resume' ? 'start' : op === 'complete' ? 'transfer' : op);

/** The counterparty answered and said no (as opposed to: it could not be reached). */
const refusedByCounterparty = (e: unknown): boolean => {
  // a local activity's failure arrives as it was thrown; a remote one's wrapped in ActivityFailure
  const failure = e instanceof ActivityFailure ? e.cause : e;
  return failure instanceof ApplicationFailure && failure.type === 'CounterpartyRejected';
};

const reasonsOf = (msg: ProcessMessage): string => ('reason' in msg && msg.reason.length ? msg.reason.join('; ') : 'no reason given');
