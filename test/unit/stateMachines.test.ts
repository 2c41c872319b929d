import { describe, expect, it } from 'vitest';
import { DATA_FLOW_TRANSITIONS, DataFlowStates, type DataFlowState } from '../../src/DataFlowState.js';
import { assertTransition, finalStates, IllegalTransitionError, reachableStates } from '../../src/StateMachine.js';
import {
  DEPRECATED_TRANSFER_PROCESS_STATES,
  FINAL_TRANSFER_PROCESS_STATES,
  TRANSFER_PROCESS_TRANSITIONS,
  TransferProcessStates,
  type TransferProcessState,
} from '../../src/TransferProcessState.js';

describe('TransferProcess state machine', () => {
  it("keeps EDC's codes and orders the new *_REQUESTED codes between their neighbours", () => {
    expect(TransferProcessStates).toMatchObject({
      INITIAL: 100, PROVISIONING: 200, PREPARATION_REQUESTED: 250, PROVISIONED: 300, REQUESTING: 400, REQUESTED: 500,
      STARTING: 550, STARTUP_REQUESTED: 570, STARTED: 600, SUSPENDING: 650, SUSPENDED: 700, RESUMING: 720,
      COMPLETING: 750, COMPLETED: 800, TERMINATING: 825, TERMINATED: 850, DEPROVISIONING: 900, DEPROVISIONING_REQUESTED: 950, DEPROVISIONED: 1000,
    });
    expect(TransferProcessStates.SUSPENSION_REQUESTED).toBeGreaterThan(TransferProcessStates.SUSPENDING);
    expect(TransferProcessStates.SUSPENSION_REQUESTED).toBeLessThan(TransferProcessStates.SUSPENDED);
    expect(TransferProcessStates.TERMINATION_REQUESTED).toBeGreaterThan(TransferProcessStates.TERMINATING);
    expect(TransferProcessStates.TERMINATION_REQUESTED).toBeLessThan(TransferProcessStates.TERMINATED);
    expect(new Set(Object.values(TransferProcessStates)).size).toBe(Object.keys(TransferProcessStates).length);
  });

  it('never enters a deprecated state: none is reachable from INITIAL, and none leads anywhere', () => {
    const reachable = reachableStates(TRANSFER_PROCESS_TRANSITIONS, 'INITIAL');
    for (const s of DEPRECATED_TRANSFER_PROCESS_STATES) {
      expect(reachable.has(s)).toBe(false);
      expect(TRANSFER_PROCESS_TRANSITIONS[s]).toEqual([]);
      expect(() => assertTransition('TransferProcess', TRANSFER_PROCESS_TRANSITIONS, 'INITIAL', s)).toThrow(IllegalTransitionError);
    }
    // every other state is reachable: the table has no dead rows
    const live = (Object.keys(TransferProcessStates) as TransferProcessState[]).filter((s) => !DEPRECATED_TRANSFER_PROCESS_STATES.includes(s));
    expect([...reachable].sort()).toEqual(live.sort());
  });

  it('has the seed table as transitions, and only COMPLETED and TERMINATED are final', () => {
    expect(TRANSFER_PROCESS_TRANSITIONS.INITIAL).toEqual(expect.arrayContaining(['PREPARATION_REQUESTED', 'REQUESTING', 'STARTUP_REQUESTED', 'STARTING']));
    expect(TRANSFER_PROCESS_TRANSITIONS.STARTED).toEqual(expect.arrayContaining(['SUSPENSION_REQUESTED', 'SUSPENDING', 'TERMINATION_REQUESTED', 'TERMINATING']));
    const live = (Object.keys(TRANSFER_PROCESS_TRANSITIONS) as TransferProcessState[]).filter((s) => !DEPRECATED_TRANSFER_PROCESS_STATES.includes(s));
    expect(finalStates(TRANSFER_PROCESS_TRANSITIONS).filter((s) => live.includes(s)).sort()).toEqual([...FINAL_TRANSFER_PROCESS_STATES].sort());
    // every live state can still end
    for (const s of live) expect([...reachableStates(TRANSFER_PROCESS_TRANSITIONS, s)].some((r) => FINAL_TRANSFER_PROCESS_STATES.includes(r))).toBe(true);
  });

  it('rejects an illegal transition with an error naming both states', () => {
    expect(() => assertTransition('TransferProcess', TRANSFER_PROCESS_TRANSITIONS, 'COMPLETED', 'STARTED')).toThrow('TransferProcess: illegal transition COMPLETED -> STARTED');
    expect(() => assertTransition('TransferProcess', TRANSFER_PROCESS_TRANSITIONS, 'REQUESTED', 'SUSPENDING')).toThrow(/REQUESTED -> SUSPENDING/);
  });
});

describe('DataFlow state machine', () => {
  it("keeps EDC's codes", () => {
    expect(DataFlowStates).toEqual({
      PROVISIONING: 25, PROVISION_REQUESTED: 40, PROVISIONED: 50, RECEIVED: 100, STARTED: 150, COMPLETED: 200, SUSPENDED: 225,
      TERMINATED: 250, FAILED: 300, NOTIFIED: 400, DEPROVISIONING: 500, DEPROVISION_REQUESTED: 550, DEPROVISIONED: 600, DEPROVISION_FAILED: 700,
    });
  });

  it('provisions before starting and deprovisions after every end', () => {
    const reachable = reachableStates(DATA_FLOW_TRANSITIONS, 'RECEIVED');
    for (const s of ['PROVISIONING', 'PROVISION_REQUESTED', 'PROVISIONED', 'STARTED', 'COMPLETED', 'SUSPENDED', 'TERMINATED', 'FAILED', 'DEPROVISIONING', 'DEPROVISION_REQUESTED', 'DEPROVISIONED', 'DEPROVISION_FAILED'] as DataFlowState[]) {
      expect(reachable.has(s)).toBe(true);
    }
    for (const end of ['COMPLETED', 'SUSPENDED', 'TERMINATED', 'FAILED'] as DataFlowState[]) expect(DATA_FLOW_TRANSITIONS[end]).toContain('DEPROVISIONING');
    expect(() => assertTransition('DataFlow', DATA_FLOW_TRANSITIONS, 'COMPLETED', 'STARTED')).toThrow('DataFlow: illegal transition COMPLETED -> STARTED');
  });
});
