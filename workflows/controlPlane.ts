// The workflows a control-plane worker runs: the state-table TransferProcess, and the code before it
// (frozen, for executions and histories of the earlier type).
export { transferProcess } from './TransferProcessWorkflow.js';
export { transferProcessWorkflowV1 as transferProcessWorkflow } from './v1/TransferProcessWorkflowV1.js';
