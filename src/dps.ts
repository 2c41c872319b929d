import { z } from 'zod';
import { HTTP_EDR_ENDPOINT_TYPE, property, type DataAddress } from './DataAddress.js';
import type { DataFlowState } from './DataFlowState.js';
import { IdSchema } from './schemas/ids.js';
import { TRANSFER_TYPES, type TransferType } from './TransferProcess.js';

/**
 * Data Plane Signaling (Eclipse DPS, v1.0-RC3) on the wire: the messages between a control plane and
 * a data plane over HTTP, and their mapping onto ferry's own contracts. Inbound messages are parsed
 * leniently where peers differ in practice (RC2 names, a missing `messageId`), strictly otherwise.
 */

export const DPS_HTTP_PULL = 'https://w3id.org/dspace-sig/profile/http-pull';
export const DPS_HTTP_PUSH = 'https://w3id.org/dspace-sig/profile/http-push';

/** DPS data-flow states (the spec's state machine). */
export const DPS_STATES = ['INITIALIZED', 'PREPARING', 'PREPARED', 'STARTING', 'STARTED', 'SUSPENDED', 'COMPLETED', 'TERMINATED'] as const;
export type DpsState = (typeof DPS_STATES)[number];

/** ferry transfer type of a DPS profile: the HTTP profile's URLs (or their short names), or a ferry type itself (ferry ↔ ferry). */
export function transferTypeOfProfile(profile: string): TransferType | undefined {
  const short = profile.replace(/^https:\/\/w3id\.org\/dspace-sig\/profile\//, '');
  if (short === 'http-pull') return 'HttpData-PULL';
  if (short === 'http-push') return 'HttpData-PUSH';
  return (TRANSFER_TYPES as readonly string[]).includes(profile) ? (profile as TransferType) : undefined;
}

/** The DPS profile a ferry transfer type goes out as. */
export function profileOfTransferType(type: string): string {
  if (type === 'HttpData-PULL') return DPS_HTTP_PULL;
  if (type === 'HttpData-PUSH') return DPS_HTTP_PUSH;
  return type;
}

const EndpointPropertyWire = z.object({ '@type': z.string().optional(), name: z.string().min(1), value: z.string() });
/** A DataAddress as DPS peers send it (DSP shape; `@type`s optional, as some peers omit them). */
export const DpsDataAddressSchema = z.object({
  '@type': z.string().optional(),
  endpointType: z.string().min(1),
  endpoint: z.string().min(1),
  endpointProperties: z.array(EndpointPropertyWire).default([]),
});
export type DpsDataAddress = z.infer<typeof DpsDataAddressSchema>;

/** A wire address as ferry knows it: DPS HTTP endpoint types become ferry's (`HttpData` to push to, the EDR type to pull from). */
export function fromWireAddress(wire: DpsDataAddress, use: 'push' | 'pull'): DataAddress {
  // a Map, not an object literal: `toString` is no endpoint type
  const known = new Map<string, DataAddress['endpointType']>([
    ['File', 'File'],
    ['HttpData', 'HttpData'],
    [DPS_HTTP_PUSH, 'HttpData'],
    [DPS_HTTP_PULL, HTTP_EDR_ENDPOINT_TYPE],
    // the IDSA HTTP type names both: a push destination, or an EDR to pull from
    [HTTP_EDR_ENDPOINT_TYPE, use === 'push' ? 'HttpData' : HTTP_EDR_ENDPOINT_TYPE],
  ]);
  const endpointType = known.get(wire.endpointType);
  if (!endpointType) throw new DpsMessageError(`unsupported endpointType ${JSON.stringify(wire.endpointType)}`);
  const props = wire.endpointProperties.map((p) => ({ name: p.name, value: p.value }));
  // DPS says how long a token lives (expiresIn); ferry's EDRs say until when (expiresAt)
  const expiresIn = props.find((p) => p.name === 'expiresIn')?.value;
  if (endpointType === HTTP_EDR_ENDPOINT_TYPE && expiresIn && /^\d+$/.test(expiresIn) && !props.some((p) => p.name === 'expiresAt')) {
    props.push({ name: 'expiresAt', value: new Date(Date.now() + Number(expiresIn) * 1000).toISOString() });
  }
  return { endpointType, endpoint: wire.endpoint, endpointProperties: props };
}

/** An (opened) ferry address as it goes out in a DPS message, for a flow of `transferType`. */
export function toWireAddress(address: DataAddress, transferType: string, now = Date.now()) {
  const dpsHttp = transferType === 'HttpData-PULL' || transferType === 'HttpData-PUSH';
  let endpointType: string = address.endpointType;
  const props = address.endpointProperties.map((p) => ({ name: p.name, value: p.value }));
  if (dpsHttp && address.endpointType === HTTP_EDR_ENDPOINT_TYPE) endpointType = DPS_HTTP_PULL;
  if (dpsHttp && address.endpointType === 'HttpData') endpointType = DPS_HTTP_PUSH;
  if (dpsHttp && props.some((p) => p.name === 'authorization') && !props.some((p) => p.name === 'authType')) props.push({ name: 'authType', value: 'bearer' });
  const expiresAt = property(address, 'expiresAt');
  if (dpsHttp && expiresAt && !props.some((p) => p.name === 'expiresIn')) {
    props.push({ name: 'expiresIn', value: String(Math.max(0, Math.floor((Date.parse(expiresAt) - now) / 1000))) });
  }
  return {
    '@type': 'DataAddress' as const,
    endpointType,
    endpoint: address.endpoint,
    ...(props.length ? { endpointProperties: props.map((p) => ({ '@type': 'EndpointProperty' as const, ...p })) } : {}),
  };
}
export type WireAddress = ReturnType<typeof toWireAddress>;

const Claims = z.record(z.string(), z.unknown());
/** Prepare and start share their fields; RC2's `transferType` and `callbackAddress` are accepted too. */
const FlowMessageBase = z
  .object({
    messageId: z.string().optional(),
    participantId: z.string().min(1).optional(),
    counterPartyId: z.string().min(1).optional(),
    dataspaceContext: z.string().optional(),
    processId: IdSchema,
    agreementId: z.string().min(1),
    datasetId: z.string().min(1),
    profile: z.string().min(1).optional(),
    /** RC2 name of `profile`. */
    transferType: z.string().min(1).optional(),
    /** RC2: where callbacks go. RC3 takes it from the control plane's registration. */
    callbackAddress: z.url().optional(),
    claims: Claims.default({}),
    metadata: z.record(z.string(), z.unknown()).optional(),
    labels: z.array(z.string()).optional(),
    dataAddress: DpsDataAddressSchema.optional(),
  })
  .refine((m) => m.profile || m.transferType, { message: 'profile is required', path: ['profile'] });
export const DataFlowPrepareWireSchema = FlowMessageBase;
export const DataFlowStartWireSchema = FlowMessageBase;
export type DataFlowFlowWire = z.infer<typeof FlowMessageBase>;

export const DataFlowStartedWireSchema = z.object({ messageId: z.string().optional(), dataAddress: DpsDataAddressSchema.optional() });
export const DataFlowReasonWireSchema = z.object({ messageId: z.string().optional(), reason: z.string().max(1000).optional() });
export const DataFlowResumeWireSchema = z.object({ messageId: z.string().optional(), dataAddress: DpsDataAddressSchema.optional() });

/** Callbacks and replies: `messageId` and `dataFlowId` are required by the spec, yet peers omit them. */
export const DataFlowStatusWireSchema = z.object({
  messageId: z.string().optional(),
  dataFlowId: z.string().optional(),
  state: z.enum(DPS_STATES),
  dataAddress: DpsDataAddressSchema.optional(),
  error: z.string().max(4000).optional(),
});
export type DataFlowStatusWire = z.infer<typeof DataFlowStatusWireSchema>;

/** The spec's `oauth2_client_credentials` profile: the keys that verify the registrant's self-signed tokens. */
export const JwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) });
export const DpsAuthorizationSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('oauth2_client_credentials'),
    tokenEndpoint: z.string().optional(),
    clientId: z.string().optional(),
    clientSecret: z.string().optional(),
    jwks: JwksSchema.optional(),
    jwksUri: z.url().optional(),
  }),
]);
export type DpsAuthorization = z.infer<typeof DpsAuthorizationSchema>;

export const ControlPlaneRegistrationSchema = z.object({
  controlplaneId: IdSchema,
  endpoint: z.url(),
  authorization: DpsAuthorizationSchema.optional(),
});
export type ControlPlaneRegistration = z.infer<typeof ControlPlaneRegistrationSchema>;

export const DataPlaneRegistrationSchema = z.object({
  dataplaneId: IdSchema,
  endpoint: z.url(),
  profiles: z.array(z.string().min(1)).min(1),
  authorization: DpsAuthorizationSchema.optional(),
  labels: z.array(z.string()).optional(),
});
export type DataPlaneRegistration = z.infer<typeof DataPlaneRegistrationSchema>;

/** A message that cannot be taken: the HTTP layer answers 400 with it. */
export class DpsMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DpsMessageError';
  }
}

/**
 * The DPS state of a ferry DataFlow. Provisioning is PREPARING before a consumer's flow ever
 * started and STARTING otherwise; after a flow ended, releasing its resources keeps the outcome
 * (SUSPENDED, COMPLETED, TERMINATED); FAILED is TERMINATED (with the error).
 */
export function dpsStateOf(flow: { role: 'CONSUMER' | 'PROVIDER'; state: DataFlowState; history: { state: DataFlowState }[] }): DpsState {
  const everStarted = flow.history.some((h) => h.state === 'STARTED');
  switch (flow.state) {
    case 'RECEIVED':
      return 'INITIALIZED';
    case 'PROVISIONING':
    case 'PROVISION_REQUESTED':
      return flow.role === 'CONSUMER' && !everStarted ? 'PREPARING' : 'STARTING';
    case 'PROVISIONED':
      return flow.role === 'CONSUMER' ? 'PREPARED' : 'STARTING';
    case 'STARTED':
    case 'SUSPENDED':
    case 'COMPLETED':
    case 'TERMINATED':
      return flow.state;
    case 'FAILED':
      return 'TERMINATED';
    default: {
      // deprovisioning after an end: the end it follows is the state
      const ends: DataFlowState[] = ['COMPLETED', 'SUSPENDED', 'TERMINATED', 'FAILED'];
      const outcome = [...flow.history].reverse().find((h) => ends.includes(h.state))?.state;
      return outcome === 'COMPLETED' || outcome === 'SUSPENDED' ? outcome : 'TERMINATED';
    }
  }
}

/** ferry's DataFlow state for a DPS state a data plane reported (the TransferProcess reads only a few of them). */
export function dataFlowStateOfDps(state: DpsState): DataFlowState {
  switch (state) {
    case 'INITIALIZED':
      return 'RECEIVED';
    case 'PREPARING':
    case 'STARTING':
      return 'PROVISIONING';
    case 'PREPARED':
      return 'PROVISIONED';
    default:
      return state;
  }
}

/** The ferry extensions in a DPS message's `metadata`, for a ferry control plane driving a ferry data plane (DPS names only the dataset). */
export const FERRY_METADATA = {
  source: 'https://w3id.org/ferry/dps/source',
  destination: 'https://w3id.org/ferry/dps/destination',
} as const;
