import { z } from 'zod';
import { DSP_CONTEXT } from '../dsp.js';
import { DataAddressSchema } from './DataAddress.js';
import { AddressSchema, AgreementIdSchema, AssetIdSchema, CodeSchema, ContextSchema, PidSchema, ReasonsSchema, token } from './limits.js';

/** The zod schemas of the DSP transfer messages (types in src/dsp.ts). */

// Every string is bounded (src/limits.ts): what one layer accepts, every other accepts too.
const base = { '@context': ContextSchema.default([DSP_CONTEXT]) };
const Pid = PidSchema;

export const TransferRequestMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferRequestMessage'),
  consumerPid: Pid,
  agreementId: AgreementIdSchema,
  /** ferry's in-cluster extension: which asset of the agreement. Over HTTPS the agreement names it. */
  assetId: AssetIdSchema.optional(),
  format: token('format', 64),
  dataAddress: DataAddressSchema.optional(),
  callbackAddress: AddressSchema,
});
export const TransferStartMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferStartMessage'),
  consumerPid: Pid,
  providerPid: Pid,
  dataAddress: DataAddressSchema.optional(),
});
export const TransferSuspensionMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferSuspensionMessage'),
  consumerPid: Pid,
  providerPid: Pid,
  code: CodeSchema.optional(),
  reason: ReasonsSchema.default([]),
});
export const TransferCompletionMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferCompletionMessage'),
  consumerPid: Pid,
  providerPid: Pid,
});
export const TransferTerminationMessageSchema = z.object({
  ...base,
  '@type': z.literal('TransferTerminationMessage'),
  consumerPid: Pid,
  providerPid: Pid,
  code: CodeSchema.optional(),
  reason: ReasonsSchema.default([]),
});

/** Messages about an existing process (everything but the request that creates it). */
export const ProcessMessageSchema = z.discriminatedUnion('@type', [
  TransferStartMessageSchema,
  TransferSuspensionMessageSchema,
  TransferCompletionMessageSchema,
  TransferTerminationMessageSchema,
]);
