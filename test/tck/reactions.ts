import type { Client } from '@temporalio/client';
import type { FerryClient } from '../../src/client.js';
import { transferProcessWorkflowId } from '../../src/ids.js';
import { isFinalTransferProcessState, type TransferProcessState } from '../../src/TransferProcessState.js';

/**
 * The scripted reactions the TCK needs (docs/tck-notes.md §3). The TCK only observes DSP messages, so
 * what ferry must do "unprompted" in each test is chosen by the agreement id the TCK is configured
 * with: once the process reaches `when`, wait PACE_MS and issue the client command `then`.
 */
export type ScriptCommand = 'start' | 'suspend' | 'resume' | 'complete' | 'terminate';
export interface Step {
  when: TransferProcessState;
  then: ScriptCommand;
}

/**
 * The TCK registers its handler for the next message only after its previous wait ended, and learns
 * the provider's pid only once it has read our answer (P4): an instant reaction gets 404/409 from it.
 */
export const PACE_MS = 500;
/** How long one step may wait for its state before the script gives up (the TCK waits 2 × 15 s at most). */
const STEP_TIMEOUT_MS = 40_000;

const start: Step = { when: 'REQUESTED', then: 'start' };
/** Keyed by agreement id. Agreements without an entry (ATP0205, ATP0301, ATP0302, ATPC01xx, ATPC03xx) get no reaction. */
export const SCRIPTS: Record<string, Step[]> = {
  // ferry is the provider; every ATP* agreement is `start: 'manual'`, so the provider waits in REQUESTED
  ATP0101: [start, { when: 'STARTED', then: 'terminate' }],
  ATP0102: [start, { when: 'STARTED', then: 'complete' }],
  ATP0103: [start, { when: 'STARTED', then: 'suspend' }, { when: 'SUSPENDED', then: 'terminate' }],
  ATP0104: [start, { when: 'STARTED', then: 'suspend' }, { when: 'SUSPENDED', then: 'resume' }, { when: 'STARTED', then: 'complete' }],
  ATP0105: [{ when: 'REQUESTED', then: 'terminate' }],
  ATP0201: [start],
  ATP0202: [start],
  ATP0203: [start],
  ATP0204: [start], // its test is @Disabled in the TCK
  ATP0303: [start],
  ATP0304: [start],
  ATP0305: [start],
  ATP0306: [start],
  // ferry is the consumer
  ATPC0201: [{ when: 'STARTED', then: 'terminate' }],
  ATPC0202: [{ when: 'STARTED', then: 'complete' }],
  ATPC0203: [{ when: 'STARTED', then: 'suspend' }, { when: 'SUSPENDED', then: 'terminate' }],
  ATPC0204: [{ when: 'STARTED', then: 'suspend' }, { when: 'SUSPENDED', then: 'resume' }, { when: 'STARTED', then: 'complete' }], // @Disabled
  ATPC0205: [{ when: 'REQUESTED', then: 'terminate' }],
};

/** The agreements ferry (as provider) holds for the TCK: every ATP* id of the TP tests. */
export const PROVIDER_AGREEMENTS = ['0101', '0102', '0103', '0104', '0105', '0201', '0202', '0203', '0204', '0205', '0301', '0302', '0303', '0304', '0305', '0306'].map((n) => `ATP${n}`);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface ReactionEngine {
  /** Runs the script of a process (once per process; a second call is a no-op). */
  watch(processId: string, agreementId?: string): void;
  /** Stops discovering and waits for running scripts to end (bounded). */
  stop(): Promise<void>;
  /** Scripts that went wrong (a refused command, a timeout), for the final report. */
  problems: string[];
}

/**
 * Runs SCRIPTS against ferry's processes. Consumer processes are handed in by the trigger endpoint;
 * provider processes are discovered by listing running transferProcess executions (the
 * provider's pid derives from the TCK's consumerPid, which only the DSP request carries) and
 * reading each one's agreementId from its status query.
 */
export function startReactionEngine(opts: { client: Client; ferry: FerryClient; connectorId: string; log: (line: string) => void }): ReactionEngine {
  const { client, ferry, connectorId, log } = opts;
  const seen = new Set<string>(); // processIds whose script has been started
  const running = new Set<Promise<void>>();
  const problems: string[] = [];
  let stopped = false;
  const prefix = transferProcessWorkflowId(connectorId, ''); // + processId

  const issue = (cmd: ScriptCommand, processId: string): Promise<unknown> => {
    switch (cmd) {
      case 'start':
        return ferry.start(connectorId, processId);
      case 'suspend':
        return ferry.suspend(connectorId, processId, 'TCK script');
      case 'resume':
        return ferry.resume(connectorId, processId);
      case 'complete':
        return ferry.complete(connectorId, processId);
      case 'terminate':
        return ferry.terminate(connectorId, processId, 'TCK script');
    }
  };

  /** Polls the status until `state`; undefined when the process ended first, the engine stopped or time ran out. */
  const reach = async (processId: string, state: TransferProcessState): Promise<TransferProcessState | undefined> => {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    let last: TransferProcessState | undefined;
    while (!stopped && Date.now() < deadline) {
      last = await ferry.status(connectorId, processId).then((s) => s.state, () => last);
      if (last === state) return state;
      if (last && isFinalTransferProcessState(last)) break;
      await sleep(100);
    }
    if (!stopped) problems.push(`${processId}: never reached ${state} (last ${last ?? 'unknown'})`);
    return undefined;
  };

  const run = async (processId: string, agreementId: string, steps: Step[]): Promise<void> => {
    const tag = `${agreementId} ${processId}`;
    for (const step of steps) {
      if (!(await reach(processId, step.when))) {
        if (!stopped) log(`${tag}: gave up waiting for ${step.when}`);
        return;
      }
      await sleep(PACE_MS);
      try {
        const at = await issue(step.then, processId);
        log(`${tag}: ${step.when} → ${step.then} (accepted in ${String(at)})`);
      } catch (e) {
        problems.push(`${tag}: ${step.then} in ${step.when} refused: ${(e as Error).message}`);
        log(`${tag}: ${step.then} REFUSED: ${(e as Error).message}`);
        return;
      }
    }
  };

  const watch = (processId: string, agreementId?: string): void => {
    if (seen.has(processId)) return;
    seen.add(processId);
    const p = (async () => {
      const agreement = agreementId ?? (await ferry.status(connectorId, processId)).agreementId;
      const steps = SCRIPTS[agreement] ?? [];
      log(`${agreement} ${processId}: ${steps.length ? `script ${steps.map((s) => `${s.when}→${s.then}`).join(', ')}` : 'no reaction'}`);
      await run(processId, agreement, steps);
    })().catch((e: Error) => void problems.push(`${processId}: ${e.message}`));
    running.add(p);
    void p.finally(() => running.delete(p));
  };

  // Discovery of provider processes. A workflow whose status query is not answerable yet (no first
  // workflow task) is simply tried again on the next round.
  const discover = async (): Promise<void> => {
    while (!stopped) {
      try {
        for await (const wf of client.workflow.list({ query: `WorkflowType = 'transferProcess' AND ExecutionStatus = 'Running'` })) {
          if (!wf.workflowId.startsWith(prefix)) continue;
          const processId = wf.workflowId.slice(prefix.length);
          if (seen.has(processId)) continue;
          const status = await ferry.status(connectorId, processId).catch(() => undefined);
          if (status?.role === 'PROVIDER') watch(processId, status.agreementId);
        }
      } catch (e) {
        if (!stopped) log(`listing workflows failed: ${(e as Error).message}`);
      }
      await sleep(150);
    }
  };
  const discovering = discover();

  return {
    watch,
    problems,
    async stop() {
      stopped = true;
      await Promise.race([Promise.allSettled([discovering, ...running]), sleep(5_000)]);
    },
  };
}
