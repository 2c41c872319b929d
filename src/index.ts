/**
 * ferry's library API: `import { FerryClient } from 'ferry'`.
 * Start, list, inspect and steer transfers from your own code (see README "With the Temporal client").
 */
export { FerryClient, TransferRequestSchema, InvalidRequestError, CommandRefusedError, type TransferRequest, type StartedTransfer } from './client.js';
export {
  resolveTemporalConnection,
  connectionOptions,
  describeConnection,
  webUiBase,
  workflowUrl,
  TemporalConnectionSchema,
  ConnectionSettingsError,
  type TemporalConnection,
  type TemporalConnectionInput,
  type ResolveOptions,
} from './connection.js';
export {
  listQuery,
  TransferListFilterSchema,
  type TransferListFilter,
  type TransferSummary,
  type TransferDetails,
  type TransferProgress,
  type PendingActivity,
  type ExecutionInfo,
} from './inspect.js';
export { Keyring, KEY_VARIABLES, keyringFromEnv, newKeyId } from './keys.js';
export { ferryDataConverter, EncryptionCodec } from './codec.js';
export { type DataAddress, type EndpointProperty } from './DataAddress.js';
export { DataAddressSchema } from './schemas/DataAddress.js';
export { TransferProcessStates, FINAL_TRANSFER_PROCESS_STATES, type TransferProcessState } from './TransferProcessState.js';
export { DataFlowStates, type DataFlowState } from './DataFlowState.js';
export { TRANSFER_TYPES, type TransferType, type TransferProcessStatus, type TransferProcessResult } from './TransferProcess.js';
export type { DataFlowStatus } from './DataFlow.js';
export { transferProcessWorkflowId, dataFlowWorkflowId } from './ids.js';
export { METRIC, ferryMetrics, type FerryMetrics } from './metrics.js';
