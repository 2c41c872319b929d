import { z } from 'zod';

/**
 * Bounded strings shared by every layer (DSP server, client, workflow contracts, config), so a value
 * one layer accepts is never refused further in: a pid ferry accepts fits the DSP route, an address
 * fits a search attribute (Temporal limits keyword values to 2048 bytes), an id never carries a
 * control character, a bidi override or a lone surrogate. Pure zod: workflows use it too.
 */

export const LIMITS = {
  /** Process ids of either side (ours are shorter: IdSchema). Percent-encoded, at most 3× this in a URL path. */
  pid: 256,
  agreementId: 256,
  assetId: 256,
  /** Counterparty and callback addresses (UTF-8 bytes): the FerryCounterparty search attribute holds them. */
  addressBytes: 1024,
  /** A data address's endpoint (URL or path). */
  endpoint: 4096,
  propertyName: 256,
  /** Property values carry tokens (JWTs). */
  propertyValue: 16_384,
  properties: 64,
  /** One reason text, and how many a DSP message may carry. */
  reason: 1000,
  reasons: 16,
  code: 256,
  contextEntries: 16,
  contextEntry: 512,
} as const;

/** Visible ASCII, no space: what identifiers from outside may contain (no unicode tricks at all). */
const VISIBLE_ASCII = /^[\x21-\x7E]+$/;
/** C0/C1 controls (NUL included) and format characters (bidi overrides, zero-width, BOM). */
const CONTROL_OR_FORMAT = /[\p{Cc}\p{Cf}]/u;
/** Controls but tab, newline and carriage return. */
const CONTROL_BUT_WHITESPACE = /[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]/;

/** No lone surrogate (a string that is not valid UTF-16 cannot become valid UTF-8). */
export const isWellFormed = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
};

export const utf8Bytes = (s: string): number => {
  let n = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return n;
};

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
