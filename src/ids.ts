/** Ids end up in workflow ids, task queues and directory names: keep them to a safe alphabet (IdSchema in src/schemas/ids.ts). */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const ID_MAX = 128;
export const ID_RULE = 'ids use letters, digits, ".", "_" and "-" and start with a letter or digit';

/**
 * Workflow types. The state-table workflows run under new type names, so executions of the frozen
 * earlier code (types `transferProcessWorkflow`, `dataFlowWorkflow`, workflows/v1) keep replaying
 * through it, with no patch marker in every new history.
 */
export const TRANSFER_PROCESS_WORKFLOW = 'transferProcess';
export const DATA_FLOW_WORKFLOW = 'dataFlow';

/** One TransferProcess workflow per process: starting the same id twice reaches the same workflow. */
export const transferProcessWorkflowId = (connectorId: string, processId: string): string =>
  `transfer-${connectorId}-${processId}`;

/** The DataFlow of a process has the process's id as flow id (as in EDC). */
export const dataFlowWorkflowId = (connectorId: string, processId: string): string =>
  `dataflow-${connectorId}-${processId}`;

export const controlPlaneTaskQueue = (connectorId: string): string => `ferry-control-plane-${connectorId}`;

/** Each data-plane instance polls its own queue, so a DataFlow (and all its activities) stays on it. */
export const dataPlaneTaskQueue = (instanceId: string): string => `ferry-data-plane-${instanceId}`;

/** Counterparty addresses of the in-cluster transport: `temporal://<connectorId>`. */
export const IN_CLUSTER_SCHEME = 'temporal://';
export const inClusterAddress = (connectorId: string): string => `${IN_CLUSTER_SCHEME}${connectorId}`;
