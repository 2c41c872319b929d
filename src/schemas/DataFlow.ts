import { z } from 'zod';
import { DataAddressSchema } from './DataAddress.js';
import { IdSchema } from './ids.js';

/** The zod schemas of the DataFlow contract (src/DataFlow.ts). */

export const DataFlowInputSchema = z.object({
  flowId: IdSchema,
  connectorId: IdSchema,
  processId: IdSchema,
  role: z.enum(['CONSUMER', 'PROVIDER']),
  /** The data-plane instance that owns the flow (its task queue runs every activity). */
  instanceId: IdSchema,
  /** The TransferProcess workflow that receives the callbacks. */
  callbackWorkflowId: z.string().min(1),
  /**
   * Where callbacks go: a TransferProcess workflow (Temporal signal), or a DPS control plane over
   * HTTP. Absent: the Temporal signal to `callbackWorkflowId`.
   */
  callback: z
    .discriminatedUnion('kind', [
      z.object({ kind: z.literal('temporal'), workflowId: z.string().min(1) }),
      z.object({ kind: z.literal('dps'), controlPlaneId: IdSchema, baseUrl: z.string().min(1) }),
    ])
    .optional(),
  /**
   * What the transfer is about, for data planes whose protocol carries it (DPS): given by the
   * TransferProcess, so the call needs not ask it back (it could not answer while it waits).
   */
  transfer: z
    .object({
      transferType: z.string().min(1).max(64),
      agreementId: z.string().min(1).max(256),
      assetId: z.string().min(1).max(256),
      counterpartyAddress: z.string().min(1).max(1024),
      counterpartyId: z.string().min(1).max(256).optional(),
    })
    .optional(),
});

export const DataFlowPrepareMessageSchema = z.object({
  transferType: z.string().min(1),
  destination: DataAddressSchema.optional(),
  source: DataAddressSchema.optional(),
});

export const DataFlowStartMessageSchema = z.object({
  transferType: z.string().min(1),
  source: DataAddressSchema.optional(),
  destination: DataAddressSchema.optional(),
  /** A provider's pull: who the EDR is issued to (the token's audience). */
  audience: z.string().min(1).optional(),
});

/** An external provisioning service finished what it answered "pending" to. */
export const ProvisionerCallbackSchema = z.object({
  op: z.enum(['provision', 'deprovision']),
  /** The provisioning round whose callback URL the service used (the `round` the flow gave provision/deprovision); absent from URLs without one. */
  round: z.string().min(1).max(128).optional(),
  provisioner: z.string().min(1),
  side: z.enum(['source', 'destination']),
  ok: z.boolean(),
  address: DataAddressSchema.optional(),
  error: z.string().max(2000).optional(),
});

export const ReasonMessageSchema = z.object({ reason: z.string().max(1000).optional() });
