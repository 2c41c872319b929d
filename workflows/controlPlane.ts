// The workflows a control-plane worker runs.
export { transferProcessWorkflow } from './TransferProcessWorkflow.js';
