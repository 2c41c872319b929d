import { DataFlowStateAttr } from './DataFlow.js';
import { AgreementAttr, AssetAttr, CounterpartyAttr, DataPlaneAttr, TransferRoleAttr, TransferStateAttr, TransferTypeAttr } from './TransferProcess.js';

/** Every search attribute ferry's workflows (and process starts) set: a namespace must have them registered (`ferry namespace setup`). */
export const SEARCH_ATTRIBUTES = [TransferStateAttr, TransferRoleAttr, TransferTypeAttr, CounterpartyAttr, DataPlaneAttr, DataFlowStateAttr, AgreementAttr, AssetAttr];
