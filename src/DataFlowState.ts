import type { TransitionTable } from './StateMachine.js';

/** States of a DataFlow (data plane), with Eclipse EDC's codes. */
export const DataFlowStates = {
  PROVISIONING: 25,
  PROVISION_REQUESTED: 40,
  PROVISIONED: 50,
  RECEIVED: 100,
  STARTED: 150,
  COMPLETED: 200,
  SUSPENDED: 225,
  TERMINATED: 250,
  FAILED: 300,
  /** Unused: EDC's state for "completion reported"; here the callback activity's outcome is recorded instead. */
  NOTIFIED: 400,
  DEPROVISIONING: 500,
  DEPROVISION_REQUESTED: 550,
  DEPROVISIONED: 600,
  DEPROVISION_FAILED: 700,
} as const;

export type DataFlowState = keyof typeof DataFlowStates;

/**
 * What may follow what. A flow is created RECEIVED; provisioning runs before it starts;
 * it ends COMPLETED, SUSPENDED, TERMINATED or FAILED, and then releases what was
 * provisioned (DEPROVISIONING…). A suspended or failed flow may be provisioned and started again.
 */
export const DATA_FLOW_TRANSITIONS: TransitionTable<DataFlowState> = {
  RECEIVED: ['PROVISIONING', 'PROVISIONED', 'STARTED', 'TERMINATED', 'FAILED'],
  PROVISIONING: ['PROVISION_REQUESTED', 'PROVISIONED', 'FAILED', 'TERMINATED'],
  // provisioners run one after another: after one called back, the next one provisions
  PROVISION_REQUESTED: ['PROVISIONING', 'PROVISIONED', 'FAILED', 'TERMINATED'],
  PROVISIONED: ['STARTED', 'SUSPENDED', 'TERMINATED', 'FAILED'],
  STARTED: ['COMPLETED', 'SUSPENDED', 'TERMINATED', 'FAILED'],
  COMPLETED: ['DEPROVISIONING'],
  SUSPENDED: ['DEPROVISIONING', 'PROVISIONING', 'STARTED', 'TERMINATED', 'COMPLETED'],
  TERMINATED: ['DEPROVISIONING'],
  // a failed provisioning may be retried by a repeated prepare/start
  FAILED: ['DEPROVISIONING', 'PROVISIONING', 'PROVISIONED', 'STARTED', 'TERMINATED'],
  DEPROVISIONING: ['DEPROVISION_REQUESTED', 'DEPROVISIONED', 'DEPROVISION_FAILED'],
  DEPROVISION_REQUESTED: ['DEPROVISIONED', 'DEPROVISION_FAILED'],
  // after a suspension the resources are provisioned again on resume
  DEPROVISIONED: ['PROVISIONING', 'STARTED', 'TERMINATED', 'COMPLETED'],
  DEPROVISION_FAILED: ['DEPROVISIONING', 'TERMINATED'],
  NOTIFIED: [],
};
