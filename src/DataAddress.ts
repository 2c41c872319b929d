import { z } from 'zod';
import { EndpointSchema, LIMITS, PropertyNameSchema, PropertyValueSchema } from './limits.js';

/**
 * A DataAddress in the Dataspace Protocol shape (DSP 2025-1 `dataAddress`):
 * `endpointType` names the kind of endpoint, `endpoint` locates it and
 * `endpointProperties` carry everything else (auth, options) as name/value pairs.
 */
export const EndpointPropertySchema = z.object({
  name: PropertyNameSchema,
  value: PropertyValueSchema,
});
export type EndpointProperty = z.infer<typeof EndpointPropertySchema>;

/**
 * An endpoint data reference (EDR) for an HTTP pull: the provider's public endpoint plus a token,
 * under the IDSA type URI that DSP peers (EDC, the TCK) use for it.
 */
export const HTTP_EDR_ENDPOINT_TYPE = 'https://w3id.org/idsa/v4.1/HTTP';

/** Address types this engine knows. Unknown types are rejected at the boundary. */
export const KNOWN_ENDPOINT_TYPES = ['File', 'HttpData', HTTP_EDR_ENDPOINT_TYPE] as const;
export type EndpointType = (typeof KNOWN_ENDPOINT_TYPES)[number];

export const DataAddressSchema = z.object({
  endpointType: z.enum(KNOWN_ENDPOINT_TYPES, {
    error: (issue) => `unknown endpointType ${JSON.stringify(issue.input)}; expected one of ${KNOWN_ENDPOINT_TYPES.join(', ')}`,
  }),
  endpoint: EndpointSchema,
  endpointProperties: z.array(EndpointPropertySchema).max(LIMITS.properties, `at most ${LIMITS.properties} endpointProperties`).default([]),
});
export type DataAddress = z.infer<typeof DataAddressSchema>;

/** Property names whose values are credentials. They are sealed before entering any workflow history. */
const SECRET_PROPERTY = /(authorization|token|secret|password|credential|api[-_]?key)/i;
export const isSecretProperty = (name: string): boolean => SECRET_PROPERTY.test(name);

/**
 * The destination of a provider's pull before provisioning: an EDR still to be issued. The data
 * plane's EDR provisioner rewrites it into the real one (endpoint and token).
 */
export const unissuedEdr = (flowId: string): DataAddress => ({
  endpointType: HTTP_EDR_ENDPOINT_TYPE,
  endpoint: `urn:ferry:edr:${flowId}`,
  endpointProperties: [],
});
export const isUnissuedEdr = (address: DataAddress): boolean =>
  address.endpointType === HTTP_EDR_ENDPOINT_TYPE && address.endpoint.startsWith('urn:ferry:edr:');

export function property(address: DataAddress, name: string): string | undefined {
  return address.endpointProperties.find((p) => p.name === name)?.value;
}

export function withProperty(address: DataAddress, name: string, value: string): DataAddress {
  return {
    ...address,
    endpointProperties: [...address.endpointProperties.filter((p) => p.name !== name), { name, value }],
  };
}

/** The address with every secret value masked: what queries and logs show. */
export function redact(address: DataAddress): DataAddress {
  return {
    ...address,
    endpointProperties: address.endpointProperties.map((p) =>
      isSecretProperty(p.name) ? { name: p.name, value: '***' } : p,
    ),
  };
}

/**
 * Merges the rewrites of several provisioners of one side, in their configured order:
 * a later rewrite wins for `endpointType`/`endpoint`; properties are united, a later one winning by name.
 */
export function mergeRewrites(original: DataAddress, rewrites: DataAddress[]): DataAddress {
  return rewrites.reduce<DataAddress>((acc, next) => {
    let merged: DataAddress = { ...acc, endpointType: next.endpointType, endpoint: next.endpoint };
    for (const p of next.endpointProperties) merged = withProperty(merged, p.name, p.value);
    return merged;
  }, original);
}
