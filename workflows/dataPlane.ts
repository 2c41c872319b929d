// The workflows a data-plane worker runs: the state-table DataFlow, and the code before it
// (frozen, for executions and histories of the earlier type).
export { dataFlow } from './DataFlowWorkflow.js';
export { dataFlowWorkflowV1 as dataFlowWorkflow } from './v1/DataFlowWorkflowV1.js';
