import { z } from 'zod';
import { CONTROL_BUT_WHITESPACE, CONTROL_OR_FORMAT, isWellFormed, LIMITS, utf8Bytes, VISIBLE_ASCII } from '../limits.js';

/** The zod schemas of the bounded strings in src/limits.ts (for boundaries; workflows never import zod). */

/** An identifier from outside: 1..max visible ASCII characters. */
export const token = (what: string, max: number) =>
  z
    .string()
    .min(1, `${what} must not be empty`)
    .max(max, `${what} has more than ${max} characters`)
    .regex(VISIBLE_ASCII, `${what} may contain only visible ASCII characters (no spaces, controls or unicode)`);

/** Free text (reasons, messages): bounded, well-formed, no controls but tab and newlines. */
export const text = (what: string, max: number) =>
  z
    .string()
    .max(max, `${what} has more than ${max} characters`)
    .refine(isWellFormed, `${what} contains a lone surrogate`)
    .refine((s) => !CONTROL_BUT_WHITESPACE.test(s), `${what} contains a control character`);

/** A locator (URL, path): bounded, well-formed, no controls nor format characters. */
export const locator = (what: string, max: number) =>
  z
    .string()
    .min(1, `${what} must not be empty`)
    .max(max, `${what} has more than ${max} characters`)
    .refine(isWellFormed, `${what} contains a lone surrogate`)
    .refine((s) => !CONTROL_OR_FORMAT.test(s), `${what} contains a control or format character`);

export const PidSchema = token('pid', LIMITS.pid);
export const AgreementIdSchema = token('agreementId', LIMITS.agreementId);
export const AssetIdSchema = token('assetId', LIMITS.assetId);
export const CodeSchema = token('code', LIMITS.code);
export const ReasonTextSchema = text('reason', LIMITS.reason);
export const ReasonsSchema = z.array(ReasonTextSchema).max(LIMITS.reasons, `at most ${LIMITS.reasons} reasons`);
export const EndpointSchema = locator('endpoint', LIMITS.endpoint);
export const PropertyNameSchema = token('endpointProperties[].name', LIMITS.propertyName);
export const PropertyValueSchema = text('endpointProperties[].value', LIMITS.propertyValue);
/** A counterparty or callback address: `temporal://<id>` or a URL, bounded in UTF-8 bytes. */
export const AddressSchema = locator('address', LIMITS.addressBytes).refine(
  (s) => utf8Bytes(s) <= LIMITS.addressBytes,
  `address has more than ${LIMITS.addressBytes} bytes`,
);
export const ContextSchema = z
  .array(token('@context entry', LIMITS.contextEntry))
  .min(1)
  .max(LIMITS.contextEntries, `@context has more than ${LIMITS.contextEntries} entries`);
