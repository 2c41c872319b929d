import { z } from 'zod';
import { credentialParams, KNOWN_ENDPOINT_TYPES, moveUrlCredentials, QUERY_PROPERTY_PREFIX, urlCredentialProblem } from '../DataAddress.js';
import { LIMITS } from '../limits.js';
import { EndpointSchema, PropertyNameSchema, PropertyValueSchema } from './limits.js';

/** The zod schema of a DataAddress (src/DataAddress.ts): bounds, known types, no credentials in the URL. */
export const EndpointPropertySchema = z.object({
  name: PropertyNameSchema,
  value: PropertyValueSchema,
});

export const DataAddressShape = z.object({
  endpointType: z.enum(KNOWN_ENDPOINT_TYPES, {
    error: (issue) => `unknown endpointType ${JSON.stringify(issue.input)}; expected one of ${KNOWN_ENDPOINT_TYPES.join(', ')}`,
  }),
  endpoint: EndpointSchema,
  endpointProperties: z.array(EndpointPropertySchema).max(LIMITS.properties, `at most ${LIMITS.properties} endpointProperties`).default([]),
});

export const DataAddressSchema = DataAddressShape
  .superRefine((address, ctx) => {
    const problem = urlCredentialProblem(address.endpoint);
    if (problem) ctx.addIssue({ code: 'custom', path: ['endpoint'], message: `endpoint ${problem}` });
    if (!URL.canParse(address.endpoint)) return;
    const url = new URL(address.endpoint);
    // what is moved into properties must still fit the bound, or the next layer would refuse the address
    if (address.endpointProperties.length + credentialParams(url).length > LIMITS.properties) {
      ctx.addIssue({ code: 'custom', path: ['endpointProperties'], message: `at most ${LIMITS.properties} endpointProperties (query credentials included)` });
    }
    for (const name of credentialParams(url)) {
      if (url.searchParams.getAll(name).length > 1) ctx.addIssue({ code: 'custom', path: ['endpoint'], message: `endpoint names the query parameter ${JSON.stringify(name)} twice` });
      if (address.endpointProperties.some((p) => p.name === `${QUERY_PROPERTY_PREFIX}${name}`)) {
        ctx.addIssue({ code: 'custom', path: ['endpoint'], message: `endpoint has a query parameter ${JSON.stringify(name)} and a property ${QUERY_PROPERTY_PREFIX}${name}` });
      }
    }
  })
  .transform((address) => moveUrlCredentials(address));

