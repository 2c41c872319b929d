import type { z } from 'zod';
import type { DataAddressShape, EndpointPropertySchema } from './schemas/DataAddress.js';

export type EndpointProperty = z.infer<typeof EndpointPropertySchema>;

/**
 * An endpoint data reference (EDR) for an HTTP pull: the provider's public endpoint plus a token,
 * under the IDSA type URI that DSP peers (EDC, the TCK) use for it.
 */
export const HTTP_EDR_ENDPOINT_TYPE = 'https://w3id.org/idsa/v4.1/HTTP';

/** Address types this engine knows. Unknown types are rejected at the boundary. */
export const KNOWN_ENDPOINT_TYPES = ['File', 'HttpData', HTTP_EDR_ENDPOINT_TYPE] as const;
export type EndpointType = (typeof KNOWN_ENDPOINT_TYPES)[number];

/**
 * Credentials in an endpoint URL, the rule: a user or password (`https://user:pass@host/…`) is
 * refused; a query parameter whose name looks like a credential (`access_token`, `token`, `sig`,
 * `signature`, `api_key`, `X-Amz-Signature`, `password`, `secret`, `session`, `auth`, `jwt`, …) is
 * moved out of the URL into the property `query:<name>` (pre-signed URLs keep working: the data
 * plane puts it back when it calls the endpoint, see `endpointUrl`). So an endpoint shown in a
 * status, a reason or a log never carries one, and every `query:` value is masked like any other.
 * Applied wherever an address enters (client, DSP, provisioner answers and callbacks, config).
 */
const CREDENTIAL_PARAM = /token|sig|secret|pass|pwd|key|auth|credential|session|jwt|code/i;
export const QUERY_PROPERTY_PREFIX = 'query:';

/** Why a URL may not be stored (it carries a user or password); undefined when it may. Never echoes the URL. */
export function urlCredentialProblem(value: string): string | undefined {
  if (!URL.canParse(value)) return undefined;
  const url = new URL(value);
  if (url.username || url.password) return 'must not carry credentials in the URL (user:password@): give them as an `authorization` property';
  return undefined;
}

export const credentialParams = (url: URL): string[] => [...new Set([...url.searchParams.keys()].filter((k) => CREDENTIAL_PARAM.test(k)))];

/**
 * A DataAddress in the Dataspace Protocol shape (DSP 2025-1 `dataAddress`):
 * `endpointType` names the kind of endpoint, `endpoint` locates it and
 * `endpointProperties` carry everything else (auth, options) as name/value pairs.
 * Its schema (bounds, credential rules) is DataAddressSchema in src/schemas/DataAddress.ts.
 */
export type DataAddress = z.infer<typeof DataAddressShape>;

/** The address with credential-like query parameters moved from its endpoint into `query:<name>` properties. */
export function moveUrlCredentials(address: DataAddress): DataAddress {
  if (!URL.canParse(address.endpoint)) return address;
  const url = new URL(address.endpoint);
  const names = credentialParams(url);
  if (!names.length) return address;
  const moved = names.map((name) => ({ name: `${QUERY_PROPERTY_PREFIX}${name}`, value: url.searchParams.get(name) ?? '' }));
  for (const name of names) url.searchParams.delete(name);
  return { ...address, endpoint: url.toString(), endpointProperties: [...address.endpointProperties, ...moved] };
}

/** The URL to call: the endpoint with its `query:` properties put back (what `moveUrlCredentials` took out). */
export function endpointUrl(address: DataAddress): string {
  const query = address.endpointProperties.filter((p) => p.name.startsWith(QUERY_PROPERTY_PREFIX));
  if (!query.length || !URL.canParse(address.endpoint)) return address.endpoint;
  const url = new URL(address.endpoint);
  for (const p of query) url.searchParams.append(p.name.slice(QUERY_PROPERTY_PREFIX.length), p.value);
  return url.toString();
}

/**
 * The destination of a provider's pull before provisioning: an EDR still to be issued. The data
 * plane's EDR provisioner rewrites it into the real one (endpoint and token).
 */
export const UNISSUED_EDR_PREFIX = 'urn:ferry:edr:';
export const unissuedEdr = (flowId: string): DataAddress => ({
  endpointType: HTTP_EDR_ENDPOINT_TYPE,
  endpoint: `${UNISSUED_EDR_PREFIX}${flowId}`,
  endpointProperties: [],
});
export const isUnissuedEdr = (address: DataAddress): boolean =>
  address.endpointType === HTTP_EDR_ENDPOINT_TYPE && address.endpoint.startsWith(UNISSUED_EDR_PREFIX);

export function property(address: DataAddress, name: string): string | undefined {
  return address.endpointProperties.find((p) => p.name === name)?.value;
}

export function withProperty(address: DataAddress, name: string, value: string): DataAddress {
  return {
    ...address,
    endpointProperties: [...address.endpointProperties.filter((p) => p.name !== name), { name, value }],
  };
}

/**
 * Property names whose values are safe to show. Queries, the CLI and logs mask every other value
 * (`authorization`, `header:Cookie`, `header:X-Signature`, `query:sig`, a provisioner's own
 * names…): an allowlist, so a credential under a name nobody foresaw is masked too. A name in a
 * vocabulary (`https://w3id.org/edc/v0.0.1/ns/contentType`) is judged by its last segment.
 */
export const DISPLAYABLE_PROPERTIES: ReadonlySet<string> = new Set([
  'fileName',
  'method',
  'contentType',
  'mediaType',
  'createDirectory',
  'authType',
  'expiresAt',
  'refreshEndpoint',
  'audience',
  'endpointType',
  'type',
]);
export const isDisplayableProperty = (name: string): boolean => DISPLAYABLE_PROPERTIES.has(name.split(/[/#]/).pop() ?? name);
export const MASK = '***';

/** The address with every value that may be a credential masked: what queries, the CLI and logs show. */
export function redact(address: DataAddress): DataAddress {
  return {
    ...address,
    endpoint: redactUrl(address.endpoint),
    endpointProperties: address.endpointProperties.map((p) => (isDisplayableProperty(p.name) ? p : { name: p.name, value: MASK })),
  };
}

/** A URL with its user, password and credential-like query values masked (addresses stored before the rule above existed). */
export function redactUrl(value: string): string {
  if (!URL.canParse(value)) return value;
  const url = new URL(value);
  if (!url.host) return value;
  let changed = false;
  if (url.username || url.password) {
    url.username = MASK;
    url.password = '';
    changed = true;
  }
  for (const name of credentialParams(url)) {
    url.searchParams.set(name, MASK);
    changed = true;
  }
  return changed ? url.toString() : value;
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
