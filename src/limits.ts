/**
 * Bounded strings shared by every layer (DSP server, client, workflow contracts, config), so a value
 * one layer accepts is never refused further in: a pid ferry accepts fits the DSP route, an address
 * fits a search attribute (Temporal limits keyword values to 2048 bytes), an id never carries a
 * control character, a bidi override or a lone surrogate. No zod: workflows import
 * this module; the zod schemas built on it are in src/schemas/limits.ts.
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
export const VISIBLE_ASCII = /^[\x21-\x7E]+$/;
/** C0/C1 controls (NUL included) and format characters (bidi overrides, zero-width, BOM). */
export const CONTROL_OR_FORMAT = /[\p{Cc}\p{Cf}]/u;
/** Controls but tab, newline and carriage return. */
export const CONTROL_BUT_WHITESPACE = /[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]/;

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
