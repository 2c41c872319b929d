// The workflows a data-plane worker runs.
export { dataFlowWorkflow } from './DataFlowWorkflow.js';
