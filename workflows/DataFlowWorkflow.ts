import {
  ActivityCancellationType,
  allHandlersFinished,
  condition,
  log,
  metricMeter,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { DataPlaneActivities } from '../activities/dataPlane.js';
import { isUnissuedEdr, redact, unissuedEdr, withProperty, type DataAddress } from '../src/DataAddress.js';
import {
  completeFlowUpdate,
  dataFlowStatusQuery,
  DataFlowStateAttr,
  EDR_PROVISIONER,
  prepareUpdate,
  provisionerCallbackSignal,
  pullAccessQuery,
  resumeFlowUpdate,
  startUpdate,
  suspendFlowUpdate,
  terminateFlowUpdate,
  type DataFlowInput,
  type DataFlowOutcome,
  type DataFlowPrepareMessage,
  type DataFlowResponse,
  type DataFlowResult,
  type DataFlowSetup,
  type DataFlowStartMessage,
  type DataFlowStatus,
  type ProvisionedResource,
  type ProvisionerCallback,
  type ReasonMessage,
} from '../src/DataFlow.js';
import { DATA_FLOW_TRANSITIONS, type DataFlowState } from '../src/DataFlowState.js';
import { CALL_EVENTS, DATA_FLOW_TABLE, type DataFlowAction, type DataFlowEvent, type DataFlowGuard } from '../src/DataFlowTable.js';
import { planProvisioning, type DeprovisionReason, type ProvisionResult, type ProvisionSide } from '../src/Provisioner.js';
import type { DataFlowSettings } from '../src/settings.js';
import { assertTransition, IllegalTransitionError } from '../src/StateMachine.js';
import type { DataPlaneCallback } from '../src/TransferProcess.js';
import { HELD, Machine, Waits, type Reply } from './machine.js';
import { message, now, toMs } from './workflowUtil.js';

/**
 * The DataFlow workflow: one per transfer on the data plane. It runs the table in
 * src/DataFlowTable.ts: the signaling calls (updates) answer at once whether async
 * (de)provisioning was triggered; provisioning, the transfer and the release run as activities
 * whose outcomes are events; the outcome of each answered-async call is called back to the
 * TransferProcess.
 */

/** The workflow type `dataFlow` (src/ids.ts); the earlier code runs as `dataFlowWorkflow`. */
export async function dataFlow(input: DataFlowInput): Promise<DataFlowResult> {
  const flow = new DataFlow(input);
  flow.setup();
  return flow.run();
}

type Step = { provisioner: string; side: ProvisionSide };
type CallOp = 'prepare' | 'start' | 'suspend' | 'terminate';

/** A provisioning pass: its provisioners one after another, in configured order. */
interface ProvisionRound {
  kind: 'provision';
  id: string;
  queue: Step[];
  /** The step whose activity runs or whose service is to call back. */
  current?: Step & { pending: boolean };
  /** A callback that overtook its step's activity result (the service called back before the 202 arrived). */
  early?: ProvisionerCallback;
}

/** A release pass: every held resource at once. */
interface ReleaseRound {
  kind: 'release';
  id: string;
  reason: DeprovisionReason;
  /** Activities still running, then callbacks still awaited, by `provisioner/side`. */
  running: Set<string>;
  awaited: Set<string>;
  /** Callbacks that overtook their activity's result, by `provisioner/side`. */
  early: Map<string, ProvisionerCallback>;
  failed?: string;
}

const local = proxyLocalActivities<DataPlaneActivities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 5 } });
const metrics = {
  transitions: metricMeter.createCounter('ferry_dataflow_transitions', 'transitions', 'DataFlow state changes, by state and role'),
  defects: metricMeter.createCounter('ferry_workflow_defects', 'defects', 'illegal transitions refused (bugs)'),
};
const key = (s: Step): string => `${s.provisioner}/${s.side}`;
const IDLE: DataFlowState[] = ['RECEIVED', 'PROVISIONED', 'SUSPENDED', 'FAILED', 'DEPROVISIONED', 'DEPROVISION_FAILED'];

class DataFlow {
  private state: DataFlowState = 'RECEIVED';
  private readonly history: { state: DataFlowState; at: string; note?: string }[] = [{ state: 'RECEIVED', at: now() }];
  private setupData!: DataFlowSetup;
  private settings!: DataFlowSettings;
  private readonly requested: { source?: DataAddress; destination?: DataAddress } = {};
  private readonly effective: { source?: DataAddress; destination?: DataAddress } = {};
  private readonly resources: ProvisionedResource[] = [];
  private round: ProvisionRound | ReleaseRound | undefined;
  /** What the provisioning under way is for: the calls to answer when it is done. */
  private purposes: ('prepare' | 'start')[] = [];
  /** The push under way (provider): `stopping` once a suspend or terminate cancelled it. */
  private transfer: { stopping: boolean; restart?: boolean } | undefined;
  private transfers = 0;
  /** Why the flow stopped moving bytes; what DEPROVISIONED means. */
  private outcome: DataFlowOutcome | undefined;
  /** Calls answered "async": the control plane waits for their callbacks. */
  private readonly owed = new Set<CallOp>();
  /** Suspend/terminate answers held until the transfer stopped (or its stop timer fired). */
  private stopWaiters: { op: CallOp; reply: Reply }[] = [];
  /** A resume that came while the suspension's release settled. */
  private resumeNext: DataFlowStartMessage | undefined;
  private pull = false;
  private progress: { bytes?: number; sha256?: string } = {};
  private reason: string | undefined;
  private error: string | undefined;
  private readonly defects: string[] = [];
  private readonly callbacks: DataPlaneCallback[] = [];
  private idleIn: DataFlowState | undefined;
  /** Set at start by the caller (RECEIVED): no upsert until the state changes. */
  private upserted: DataFlowState | undefined = workflowInfo().typedSearchAttributes.get(DataFlowStateAttr) as DataFlowState | undefined;
  private readonly waits = new Waits();
  private readonly machine: Machine<DataFlowState, DataFlowEvent, DataFlowAction, DataFlowGuard>;

  constructor(private readonly input: DataFlowInput) {
    this.machine = new Machine({
      table: DATA_FLOW_TABLE,
      label: input.flowId,
      state: () => this.state,
      holds: (g) => (g === 'stopping' ? !!this.transfer?.stopping : this.outcome === g),
      run: (action, data, reply, event) => this.act(action, data, reply, event),
      note: (text) => this.note(text),
      settled: () => this.settled(),
    });
  }

  setup(): void {
    const m = this.machine;
    setHandler(dataFlowStatusQuery, () => this.status());
    setHandler(pullAccessQuery, () => ({
      state: this.state,
      liveTokenIds: this.resources.filter((r) => r.provisioner === EDR_PROVISIONER && r.ready && !r.released && r.resource.tokenId).map((r) => r.resource.tokenId!),
      ...(this.pull && this.effective.source ? { source: this.effective.source } : {}),
    }));
    const ask = (op: keyof typeof CALL_EVENTS, msg: unknown) => m.ask(CALL_EVENTS[op], msg ?? {}) as Promise<DataFlowResponse>;
    const valid = (op: keyof typeof CALL_EVENTS) => (_msg?: unknown) => m.validate(CALL_EVENTS[op]);
    setHandler(prepareUpdate, (msg: DataFlowPrepareMessage) => ask('prepare', msg), { validator: valid('prepare') });
    setHandler(startUpdate, (msg: DataFlowStartMessage) => ask('start', msg), { validator: valid('start') });
    setHandler(resumeFlowUpdate, (msg: DataFlowStartMessage) => ask('resume', msg), { validator: valid('resume') });
    setHandler(suspendFlowUpdate, (msg: ReasonMessage) => ask('suspend', msg), { validator: valid('suspend') });
    setHandler(terminateFlowUpdate, (msg: ReasonMessage) => ask('terminate', msg), { validator: valid('terminate') });
    setHandler(completeFlowUpdate, () => ask('complete', {}), { validator: valid('complete') });
    setHandler(provisionerCallbackSignal, (cb: ProvisionerCallback) => m.post('provisioner.calledBack', cb));
  }

  async run(): Promise<DataFlowResult> {
    this.setupData = await local.dataFlowSetup();
    this.settings = this.setupData.settings;
    this.machine.open();
    await condition(() => this.finished());
    await condition(allHandlersFinished);
    return { state: this.state, reason: this.reason ?? this.error ?? 'ended', ...(this.outcome ? { outcome: this.outcome } : {}) };
  }

  private act(action: DataFlowAction, data: unknown, reply: Reply | undefined, event: DataFlowEvent): unknown {
    switch (action) {
      case 'prepare':
        return this.prepare(data as DataFlowPrepareMessage);
      case 'start':
      case 'resume':
        return this.start(data as DataFlowStartMessage, action);
      case 'suspend':
        return this.stop('suspended', (data as ReasonMessage).reason ?? 'suspended by the control plane', 'suspend', reply);
      case 'terminate':
        return this.stop('terminated', (data as ReasonMessage).reason ?? 'terminated by the control plane', 'terminate', reply);
      case 'complete':
        return this.complete();
      case 'repeat':
        return this.repeat(event);
      case 'alreadyDelivered':
        this.note(`${event} after the bytes were verified: answered as completed`);
        return this.respond(false);
      case 'joinStart':
        if (!this.purposes.includes('start')) this.purposes.push('start');
        this.owed.add('start');
        return this.respond(true);
      case 'resumeAfterRelease':
        this.resumeNext = data as DataFlowStartMessage;
        this.owed.add('start');
        this.note('resume waits for the suspension\'s release to finish');
        return this.respond(true);
      case 'provisioned':
        return this.provisioned(data as ProvisionResult);
      case 'provisionFailed':
        return this.provisionFailed(`provisioning failed: ${data as string}`);
      case 'calledBack':
        return this.calledBack(data as ProvisionerCallback);
      case 'callbackTimedOut':
        return this.callbackTimedOut();
      case 'provisionedAfterEnd':
        return this.provisionedAfterEnd(data);
      case 'released':
        return this.released(data as { step: Step; pending: boolean });
      case 'releaseFailed':
        return this.releaseFailed(data as { step: Step; error: string });
      case 'bytesDone':
        return this.bytesDone(data as { bytes: number; sha256: string });
      case 'bytesFailed':
        return this.bytesFailed(data as string);
      case 'transferStopped':
        return this.transferStopped(data);
      case 'stopDeadline':
        return this.stopDeadline();
      case 'idle':
        this.reason = `idle in ${this.state} for ${this.settings.idleTimeout}`;
        return this.stop('terminated', this.reason, undefined, undefined);
    }
  }

  // ---- provisioning ----

  private prepare(msg: DataFlowPrepareMessage): DataFlowResponse {
    this.takeAddresses(msg);
    this.error = undefined;
    this.outcome = undefined;
    const steps = this.plan();
    if (!steps.length) {
      this.enter('PROVISIONED', 'nothing to provision');
      return this.respond(false, this.effective.destination);
    }
    this.provision(steps, 'prepare');
    return this.respond(true);
  }

  /** start and resume: provision what is missing (again, after a release), then run. */
  private start(msg: DataFlowStartMessage, op: 'start' | 'resume'): DataFlowResponse {
    if (this.input.role === 'PROVIDER' && msg.transferType.endsWith('-PULL')) {
      // the destination of a pull is the EDR our provisioner issues (again after a release)
      this.pull = true;
      const request = unissuedEdr(this.input.flowId);
      msg = { ...msg, destination: msg.audience ? withProperty(request, 'audience', msg.audience) : request };
    }
    this.takeAddresses(msg);
    this.error = undefined;
    this.outcome = undefined;
    const steps = this.state === 'PROVISIONED' ? [] : this.plan();
    if (!steps.length) {
      this.enter('STARTED', this.state === 'PROVISIONED' ? undefined : 'nothing to provision');
      this.startTransfer();
      return this.respond(false, this.pull ? this.effective.destination : undefined);
    }
    this.provision(steps, 'start');
    return this.respond(true);
  }

  /** The provisioners that apply, less those whose resource is still held. */
  private plan(): Step[] {
    return planProvisioning(this.setupData.provisioners, this.input.role, this.requested).filter((s) => !this.held(s));
  }

  private held(s: Step): boolean {
    const r = this.resourceOf(s);
    return !!r && r.ready && !r.released;
  }

  private resourceOf(s: Step): ProvisionedResource | undefined {
    return this.resources.find((r) => r.provisioner === s.provisioner && r.side === s.side);
  }

  /** The addresses a call brings; one rewritten by a still-held provision stays rewritten. */
  private takeAddresses(msg: { source?: DataAddress; destination?: DataAddress }): void {
    if (msg.source) this.requested.source = msg.source;
    if (msg.destination) this.requested.destination = msg.destination;
    for (const side of ['source', 'destination'] as const) {
      const rewritten = this.resources.some((r) => r.side === side && r.ready && !r.released);
      if (!rewritten) this.effective[side] = this.requested[side];
    }
  }

  private provision(steps: Step[], purpose: 'prepare' | 'start'): void {
    this.purposes = [purpose];
    this.owed.add(purpose);
    this.round = { kind: 'provision', id: uuid4(), queue: steps };
    // a pull's destination is issued whole by its provisioner
    for (const side of ['source', 'destination'] as const) {
      const base = this.requested[side];
      if (base && isUnissuedEdr(base)) this.effective[side] = base;
    }
    this.enter('PROVISIONING');
    this.provisionNext();
  }

  /** The next provisioner, given the address the previous ones produced (rewrites compose in order). */
  private provisionNext(): void {
    const round = this.round as ProvisionRound;
    const step = round.queue.shift();
    if (!step) return this.provisionDone();
    round.current = { ...step, pending: false };
    const address = this.effective[step.side];
    // local activities: one marker each, answered within the workflow task
    const acts = proxyLocalActivities<DataPlaneActivities>({
      startToCloseTimeout: '2m',
      retry: { maximumAttempts: this.settings.provisionMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
      summary: `provision ${step.side} with ${step.provisioner}`,
    });
    this.waits.call(
      'provision',
      () => acts.provisionStep({ flowId: this.input.flowId, role: this.input.role, provisioner: step.provisioner, side: step.side, address: address!, round: round.id }),
      (result) => this.machine.post('provision.done', result),
      (e) => this.machine.post('provision.failed', message(e)),
    );
  }

  private provisioned(result: ProvisionResult): void {
    const round = this.round as ProvisionRound;
    const step = round.current!;
    this.record(step, result.resource, !result.pending);
    if (result.address) this.effective[step.side] = result.address;
    if (!result.pending) return this.nextStepIn('PROVISIONING');
    step.pending = true;
    if (round.early) return this.calledBack(round.early);
    this.enter('PROVISION_REQUESTED', `waiting for ${step.provisioner} to call back`);
    this.waits.timer('callback', toMs(this.settings.provisionTimeout), `${step.provisioner} callback timeout (${this.settings.provisionTimeout})`, () =>
      this.machine.post('timer.callback'),
    );
  }

  private nextStepIn(state: DataFlowState): void {
    if (this.state !== state) this.enter(state);
    this.provisionNext();
  }

  private record(step: Step, resource: Record<string, string>, ready: boolean): void {
    const existing = this.resourceOf(step);
    if (existing) Object.assign(existing, { resource, ready, released: false });
    else this.resources.push({ provisioner: step.provisioner, side: step.side, resource, ready, released: false });
  }

  private provisionDone(): void {
    this.round = undefined;
    this.enter('PROVISIONED');
    const purposes = this.purposes;
    this.purposes = [];
    if (purposes.includes('start')) {
      this.enter('STARTED');
      this.startTransfer();
    }
    for (const op of purposes) this.pay(op, true, undefined, op === 'prepare' || this.pull ? this.effective.destination : undefined);
  }

  private provisionFailed(why: string): void {
    this.waits.stop('callback');
    this.round = undefined;
    this.fail(why);
    for (const op of this.purposes) this.pay(op, false, why);
    this.purposes = [];
  }

  /** A pending provisioner (or deprovisioner) reports: only the round and step the flow waits on count. */
  private calledBack(cb: ProvisionerCallback): void {
    const round = this.round;
    // every callback URL this flow handed out is bound to its round: one of another round (a replay) counts for nothing
    const ours = !!round && cb.round === round.id;
    if (ours && round.kind === 'provision' && cb.op === 'provision' && round.current?.provisioner === cb.provisioner && round.current.side === cb.side && !round.current.pending) {
      // the service called back before its 202 reached us: kept until the activity's answer
      round.early = cb;
      return;
    }
    if (ours && round.kind === 'release' && cb.op === 'deprovision' && round.running.has(key(cb))) {
      round.early.set(key(cb), cb);
      return;
    }
    const expected =
      round?.kind === 'provision'
        ? cb.op === 'provision' && round.current?.pending && round.current.provisioner === cb.provisioner && round.current.side === cb.side
        : round?.kind === 'release'
          ? cb.op === 'deprovision' && round.awaited.has(key(cb))
          : false;
    if (!round || !ours || !expected) {
      return this.note(`callback of ${cb.op}er ${cb.provisioner} ignored: not the one awaited`);
    }
    if (round.kind === 'provision') {
      round.early = undefined;
      this.waits.stop('callback');
      if (!cb.ok) return this.provisionFailed(`provisioner ${cb.provisioner} failed: ${cb.error ?? 'no reason given'}`);
      const step = round.current!;
      this.resourceOf(step)!.ready = true;
      if (cb.address) this.effective[step.side] = cb.address;
      return this.nextStepIn('PROVISIONING');
    }
    round.awaited.delete(key(cb));
    if (!cb.ok) round.failed ??= `deprovisioner ${cb.provisioner} failed: ${cb.error ?? 'no reason given'}`;
    else this.markReleased(cb, round.reason);
    this.releaseProgress();
  }

  private callbackTimedOut(): void {
    const round = this.round!;
    if (round.kind === 'provision') return this.provisionFailed(`provisioner ${round.current?.provisioner} did not call back within ${this.settings.provisionTimeout}`);
    round.failed ??= `deprovisioner ${[...round.awaited].join(', ')} did not call back within ${this.settings.deprovisionTimeout}`;
    round.awaited.clear();
    this.releaseDone();
  }

  /** Provisioning a terminate cut short: what it made is recorded, then released. */
  private provisionedAfterEnd(result: unknown): void {
    const round = this.round as ProvisionRound | undefined;
    if (round?.kind === 'provision' && round.current && typeof result === 'object' && result) {
      this.record(round.current, (result as ProvisionResult).resource, false);
    }
    this.round = undefined;
    this.settle();
  }

  // ---- the transfer ----

  /** Starts the bytes moving (provider push); the consumer's data plane and a provider's pull are passive. */
  private startTransfer(): void {
    if (this.input.role !== 'PROVIDER') return;
    if (this.pull) {
      if (!this.effective.destination || isUnissuedEdr(this.effective.destination)) this.bytesFailed('cannot start pull: no EDR was issued (this data plane has no public API configured)');
      return;
    }
    if (this.transfer) {
      // an earlier run is still stopping: never two writers; this one begins when it has stopped
      this.transfer.restart = true;
      return;
    }
    const src = this.effective.source;
    const dst = this.effective.destination;
    if (!src || !dst) return this.bytesFailed(`cannot start transfer: ${!src ? 'source' : 'destination'} address missing`);
    this.transfer = { stopping: false };
    const s = this.settings;
    const acts = proxyActivities<DataPlaneActivities>({
      // No fixed lifetime: a live transfer is watched by its heartbeats, and its budget
      // (transferMaxAttempts in a row without progress) is kept by the activity itself, which
      // fails for good when spent; Temporal retries without a count. The start-to-close is an
      // operator's bound on one attempt (a year by default), not a lifetime.
      // (a flow whose setup was recorded before this setting existed has none: the default)
      startToCloseTimeout: s.transferStartToCloseTimeout ?? '365d',
      heartbeatTimeout: s.transferHeartbeatTimeout,
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      // no maximumAttempts: unlimited (0 is refused by the SDK)
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', nonRetryableErrorTypes: ['BudgetExhausted', 'TransferRejected'] },
      summary: `transfer ${src.endpointType} -> ${dst.endpointType} (run ${++this.transfers})`,
    });
    this.waits.call(
      'transfer',
      () => acts.transfer({ flowId: this.input.flowId, source: src, destination: dst }),
      (result) => this.machine.post('transfer.done', result),
      (e) => this.machine.post('transfer.failed', message(e)),
      { cancellable: true },
    );
  }

  private bytesDone(result: { bytes: number; sha256: string }): void {
    this.transfer = undefined;
    this.progress = result;
    this.outcome = 'completed';
    this.reason = 'transfer completed';
    this.enter('COMPLETED', `${result.bytes} bytes, sha256 ${result.sha256}`);
    this.notify({ op: 'transfer', ok: true });
    this.settle();
  }

  private bytesFailed(why: string): void {
    this.transfer = undefined;
    this.fail(`transfer failed: ${why}`);
    this.notify({ op: 'transfer', ok: false, error: this.error! });
  }

  private transferStopped(outcome: unknown): void {
    const restart = this.transfer?.restart;
    this.transfer = undefined;
    if (typeof outcome === 'object' && outcome && 'sha256' in outcome) this.note('the transfer finished before it could be stopped; a resume completes it at once');
    if (restart && this.state === 'STARTED') this.startTransfer();
    this.settle();
  }

  private stopDeadline(): void {
    // the transfer is slow to stop: answer "async" and call back once it has
    for (const w of this.stopWaiters) {
      this.owed.add(w.op);
      w.reply.resolve(this.respond(true));
    }
    this.stopWaiters = [];
  }

  // ---- stopping and releasing ----

  /**
   * suspend, terminate (and the idle timer): stop the transfer, then release what is held. The
   * call answers "async" when something is released (or the transfer is slow to stop).
   */
  private stop(outcome: 'suspended' | 'terminated', why: string, op: CallOp | undefined, reply: Reply | undefined): unknown {
    const was = this.outcome;
    this.outcome = outcome;
    this.reason = why;
    this.resumeNext = undefined;
    if (this.transfer && !this.transfer.stopping) {
      this.transfer.stopping = true;
      this.waits.cancel('transfer');
    }
    const target = outcome === 'suspended' ? 'SUSPENDED' : 'TERMINATED';
    if (this.state !== target && DATA_FLOW_TRANSITIONS[this.state].includes(target)) this.enter(target, why);
    else if (was !== outcome) this.note(`${outcome}: ${why}`);
    // a pending provisioning step finishes first (its resource is then released); a callback it awaited no longer matters
    if (this.round?.kind === 'provision' && !this.waits.running('provision')) {
      this.waits.stop('callback');
      this.round = undefined;
    }
    this.owed.delete('prepare');
    this.owed.delete('start');
    this.purposes = [];
    const busy = this.releaseNeeded() || !!this.round || this.waits.running('provision');
    if (busy) {
      if (op) this.owed.add(op);
      this.settle();
      return this.respond(true);
    }
    if (this.transfer && op && reply) {
      // nothing to release: the answer waits (briefly) for the transfer to stop
      this.stopWaiters.push({ op, reply });
      this.waits.timer('stop', toMs(this.settings.stopTimeout), `wait for the transfer to stop (${this.settings.stopTimeout})`, () => this.machine.post('timer.stop'));
      return HELD;
    }
    this.settle();
    return this.respond(false);
  }

  private complete(): DataFlowResponse {
    if (this.transfer && !this.transfer.stopping) {
      this.transfer.stopping = true;
      this.waits.cancel('transfer');
    }
    this.outcome = 'completed';
    this.reason = 'transfer completed';
    this.enter('COMPLETED', 'the control plane reported completion');
    this.settle();
    return this.respond(false);
  }

  /** A repeated call: answered as the flow stands (async while its work goes on, and then called back). */
  private repeat(event: DataFlowEvent): DataFlowResponse {
    if (this.state === 'STARTED') return this.respond(false, this.pull ? this.effective.destination : undefined);
    if (this.state === 'PROVISIONED') return this.respond(false, this.effective.destination);
    const busy = !!this.round || !!this.transfer || this.waits.running('provision');
    const op = event === 'call.suspend' ? 'suspend' : event === 'call.terminate' ? 'terminate' : event === 'call.prepare' ? 'prepare' : undefined;
    if (busy && op) this.owed.add(op);
    return this.respond(busy);
  }

  /** Resources still to release for the flow's outcome (a suspension keeps delivered data; an end releases all). */
  private toRelease(): ProvisionedResource[] {
    if (!this.outcome || this.outcome === 'failed') return [];
    return this.resources.filter((r) => (this.outcome === 'suspended' ? r.released === false : r.released !== true));
  }

  private releaseNeeded(): boolean {
    return this.toRelease().length > 0;
  }

  /**
   * Moves a stopped flow on as far as it can: release once the transfer and any provisioning
   * step have stopped; once released, pay the owed callbacks, answer held calls, resume if asked.
   */
  private settle(): void {
    if (this.transfer || this.round || this.waits.running('provision')) return;
    const toRelease = this.toRelease();
    if (toRelease.length) return this.release(toRelease);
    for (const w of this.stopWaiters) w.reply.resolve(this.respond(false));
    this.stopWaiters = [];
    this.waits.stop('stop');
    if (this.outcome === 'suspended' || this.outcome === 'terminated') this.pay(this.outcome === 'suspended' ? 'suspend' : 'terminate', true);
    if (this.resumeNext) {
      const msg = this.resumeNext;
      this.resumeNext = undefined;
      this.start(msg, 'resume');
    }
  }

  private release(resources: ProvisionedResource[]): void {
    const reason: DeprovisionReason = this.outcome === 'completed' ? 'completed' : this.outcome === 'suspended' ? 'suspended' : 'terminated';
    const round: ReleaseRound = { kind: 'release', id: uuid4(), reason, running: new Set(), awaited: new Set(), early: new Map() };
    this.round = round;
    this.enter('DEPROVISIONING');
    const acts = proxyLocalActivities<DataPlaneActivities>({
      startToCloseTimeout: '2m',
      retry: { maximumAttempts: this.settings.provisionMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
      summary: `release (${reason})`,
    });
    for (const r of resources) {
      const step: Step = { provisioner: r.provisioner, side: r.side };
      round.running.add(key(step));
      this.waits.call(
        `deprovision:${key(step)}`,
        () => acts.deprovisionStep({ flowId: this.input.flowId, provisioner: r.provisioner, side: r.side, resource: r.resource, reason, round: round.id }),
        (res) => this.machine.post('deprovision.done', { step, pending: res.pending }),
        (e) => this.machine.post('deprovision.failed', { step, error: message(e) }),
      );
    }
  }

  private released({ step, pending }: { step: Step; pending: boolean }): void {
    const round = this.round as ReleaseRound;
    round.running.delete(key(step));
    if (pending) round.awaited.add(key(step));
    else this.markReleased(step, round.reason);
    this.releaseProgress();
  }

  private releaseFailed({ step, error }: { step: Step; error: string }): void {
    const round = this.round as ReleaseRound;
    round.running.delete(key(step));
    round.failed ??= `deprovisioning failed: ${error}`;
    this.releaseProgress();
  }

  private releaseProgress(): void {
    const round = this.round as ReleaseRound;
    if (round.running.size) return;
    for (const [k, cb] of round.early) {
      round.early.delete(k);
      if (round.awaited.has(k)) return this.calledBack(cb); // it calls releaseProgress again
    }
    if (!round.awaited.size) {
      this.waits.stop('callback');
      return this.releaseDone();
    }
    if (this.state !== 'DEPROVISION_REQUESTED') {
      this.enter('DEPROVISION_REQUESTED', `waiting for ${[...round.awaited].join(', ')}`);
      this.waits.timer('callback', toMs(this.settings.deprovisionTimeout), `deprovision callback timeout (${this.settings.deprovisionTimeout})`, () =>
        this.machine.post('timer.callback'),
      );
    }
  }

  private markReleased(step: Step, reason: DeprovisionReason): void {
    const r = this.resourceOf(step);
    if (r) r.released = reason === 'suspended' ? 'suspended' : true;
  }

  private releaseDone(): void {
    const round = this.round as ReleaseRound;
    this.round = undefined;
    if (round.failed) {
      this.error = round.failed;
      this.enter('DEPROVISION_FAILED', round.failed);
      for (const w of this.stopWaiters) w.reply.resolve(this.respond(false));
      this.stopWaiters = [];
      if (this.outcome === 'suspended' || this.outcome === 'terminated') this.pay(this.outcome === 'suspended' ? 'suspend' : 'terminate', false, round.failed);
      return;
    }
    this.enter('DEPROVISIONED');
    this.settle();
  }

  private fail(why: string): void {
    this.error = why;
    this.reason = why;
    this.outcome = 'failed';
    this.enter('FAILED', why);
  }

  /** The flow is over: ended (completed or terminated), released, and every callback sent. */
  private finished(): boolean {
    return (
      (this.outcome === 'completed' || this.outcome === 'terminated') &&
      this.state !== 'DEPROVISION_FAILED' &&
      !this.transfer &&
      !this.round &&
      !this.toRelease().length &&
      !this.waits.names().some((n) => n !== 'idle' && n !== 'stop') &&
      !this.callbacks.length
    );
  }

  // ---- callbacks to the control plane ----

  /** Answers a call that was answered "async": the control plane waits for this callback. */
  private pay(op: CallOp, ok: boolean, error?: string, dataAddress?: DataAddress): void {
    if (!this.owed.delete(op)) return;
    this.notify({ op, ok, ...(error ? { error } : {}), ...(dataAddress ? { dataAddress } : {}) });
  }

  /** Callbacks go out one at a time, in order, each retried (bounded); a lost one is caught by the control plane's stale check. */
  private notify(cb: Omit<DataPlaneCallback, 'flowId'>): void {
    this.callbacks.push({ flowId: this.input.flowId, ...cb });
    this.sendCallback();
  }

  private sendCallback(): void {
    if (this.waits.running('callback-out') || !this.callbacks.length) return;
    const cb = this.callbacks[0]!;
    const options = {
      startToCloseTimeout: '30s',
      retry: { maximumAttempts: this.settings.callbackMaxAttempts, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
      summary: `tell the control plane: ${cb.op} ${cb.ok ? 'done' : 'failed'}`,
    } as const;
    // A DPS control plane's callback waits for the DPS API to decide whether its answer was 202 (a
    // callback follows) or 200 (none does); the API decides by querying and updating this flow. As
    // a local activity the callback would hold this workflow task, and so the query and the update,
    // until its wait ran out: a regular activity leaves the flow free to answer.
    const acts = this.input.callback ? proxyActivities<DataPlaneActivities>(options) : proxyLocalActivities<DataPlaneActivities>(options);
    const next = () => {
      this.callbacks.shift();
      this.sendCallback();
    };
    this.waits.call(
      'callback-out',
      () => acts.notifyControlPlane({ workflowId: this.input.callbackWorkflowId, callback: cb, ...(this.input.callback ? { target: this.input.callback } : {}) }),
      next,
      (e) => {
        this.error = `callback to control plane failed: ${message(e)}`;
        this.note(this.error);
        next();
      },
    );
  }

  // ---- states, notes, status ----

  private respond(async: boolean, dataAddress?: DataAddress): DataFlowResponse {
    return { state: this.state, async, ...(dataAddress ? { dataAddress } : {}), ...(this.outcome === 'completed' ? { completed: true as const } : {}) };
  }

  private enter(to: DataFlowState, note?: string): void {
    try {
      assertTransition('DataFlow', DATA_FLOW_TRANSITIONS, this.state, to);
    } catch (e) {
      if (!(e instanceof IllegalTransitionError)) throw e;
      this.defects.push(`${e.message} (${note ?? 'no note'})`);
      log.error('DataFlow defect', { flowId: this.input.flowId, defect: e.message });
      metrics.defects.add(1, { workflow: 'DataFlow' });
      return;
    }
    this.state = to;
    this.history.push({ state: to, at: now(), ...(note ? { note } : {}) });
    log.info('DataFlow transition', { flowId: this.input.flowId, state: to, note });
    metrics.transitions.add(1, { state: to, role: this.input.role });
  }

  private note(text: string): void {
    this.history.push({ state: this.state, at: now(), note: text });
  }

  private settled(): void {
    if (this.upserted !== this.state) {
      this.upserted = this.state;
      upsertSearchAttributes([{ key: DataFlowStateAttr, value: this.state }]);
    }
    // an idle state waits for the control plane with a timer; any other state cancels it
    const idle = IDLE.includes(this.state) && !this.transfer && !this.round && !this.finished();
    if (!idle) {
      this.waits.stop('idle');
      this.idleIn = undefined;
    } else if (this.idleIn !== this.state) {
      this.idleIn = this.state;
      this.waits.timer('idle', toMs(this.settings.idleTimeout), `idle timeout (${this.settings.idleTimeout})`, () => this.machine.post('timer.idle'));
    }
    setCurrentDetails(`${this.state}${this.waitingFor() ? ` — ${this.waitingFor()}` : ''}`);
  }

  private waitingFor(): string | undefined {
    const at = (name: string) => this.waits.firesAt(name)?.toISOString().replace('T', ' ').slice(0, 19);
    const r = this.round;
    if (r?.kind === 'provision' && r.current) return r.current.pending ? `waiting for provisioner ${r.current.provisioner} to call back until ${at('callback')}` : `provisioning with ${r.current.provisioner}`;
    if (r?.kind === 'release') return r.awaited.size ? `waiting for ${[...r.awaited].join(', ')} to call back until ${at('callback')}` : `releasing ${[...r.running].join(', ')}`;
    if (this.transfer) return this.transfer.stopping ? 'waiting for the transfer to stop' : 'bytes moving';
    if (IDLE.includes(this.state) && this.idleIn) return `waiting for the control plane; ends TERMINATED at ${at('idle')} (idle timeout ${this.settings.idleTimeout})`;
    return this.reason;
  }

  private status(): DataFlowStatus {
    return {
      flowId: this.input.flowId,
      processId: this.input.processId,
      role: this.input.role,
      instanceId: this.input.instanceId,
      state: this.state,
      ...(this.effective.source ? { source: redact(this.effective.source) } : {}),
      ...(this.effective.destination ? { destination: redact(this.effective.destination) } : {}),
      resources: this.resources.map((r) => ({ ...r })),
      ...(this.progress.bytes !== undefined ? { bytesTransferred: this.progress.bytes } : {}),
      ...(this.progress.sha256 ? { sha256: this.progress.sha256 } : {}),
      ...(this.outcome ? { outcome: this.outcome } : {}),
      ...(this.reason ? { reason: this.reason } : {}),
      ...(this.error ? { error: this.error } : {}),
      ...(this.defects.length ? { defects: [...this.defects] } : {}),
      history: [...this.history],
    };
  }
}
