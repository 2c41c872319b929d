import { z } from 'zod';
import { TRANSFER_TYPES } from '../TransferProcess.js';
import { DataAddressSchema } from './DataAddress.js';
import { IdSchema } from './ids.js';
import { AddressSchema, AgreementIdSchema, AssetIdSchema, PidSchema } from './limits.js';
import { TransferSettingsOverridesSchema } from './settings.js';

/** The zod schemas of the TransferProcess contract (src/TransferProcess.ts), for the boundaries that start and signal it. */

export const TransferTypeSchema = z.enum(TRANSFER_TYPES, {
  error: (i) => `unsupported transferType ${JSON.stringify(i.input)}; supported: ${TRANSFER_TYPES.join(', ')}`,
});

export const TransferProcessInputSchema = z.object({
  role: z.enum(['CONSUMER', 'PROVIDER']),
  /** This connector. */
  connectorId: IdSchema,
  /** This side's process id (consumerPid for the consumer, providerPid for the provider). */
  processId: IdSchema,
  /** The other side's process id, when known at start (the provider knows the consumerPid). */
  counterpartyPid: PidSchema.optional(),
  /** Where the counterparty's connector is reached, e.g. `temporal://provider`. */
  counterpartyAddress: AddressSchema,
  /**
   * Who the counterparty is (its authenticated id: a configured DSP counterparty, or the in-cluster
   * consumer connector): only it may touch this process; addresses are not identities. The DSP
   * server also puts it in the workflow's memo.
   */
  counterpartyId: IdSchema.optional(),
  agreementId: AgreementIdSchema,
  assetId: AssetIdSchema,
  transferType: TransferTypeSchema,
  /** Consumer: where the data should go. Provider: the address the consumer asked for. */
  dataDestination: DataAddressSchema.optional(),
  /** Pin the transfer to one data-plane instance instead of letting the selector choose. */
  dataPlaneId: IdSchema.optional(),
  settings: TransferSettingsOverridesSchema.optional(),
  /** Provider: `manual` waits in REQUESTED for a client `start` (an operator's go-ahead) instead of starting at once. */
  startPolicy: z.enum(['automatic', 'manual']).optional(),
});
/** What the data plane reports back on a `*_REQUESTED` wait or when the transfer ends. */
export const DataPlaneCallbackSchema = z.object({
  flowId: z.string(),
  /** Which call this answers; `transfer` reports the end of the bytes' movement. */
  op: z.enum(['prepare', 'start', 'suspend', 'terminate', 'transfer']),
  ok: z.boolean(),
  dataAddress: DataAddressSchema.optional(),
  error: z.string().optional(),
});
export const ReasonSchema = z.object({ reason: z.string().max(1000).optional() });
