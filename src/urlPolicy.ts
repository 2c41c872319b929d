import ipaddr from 'ipaddr.js';

/**
 * Where ferry may send an HTTP request, decided on parsed URLs, never on raw strings. A URL is
 * parsed with the WHATWG parser (what fetch itself uses), which already lowercases scheme and host,
 * drops default ports, turns backslashes into slashes, resolves `.`/`..` segments (`%2e%2e` too) and
 * reads decimal, octal and hex IPv4 forms. On top of that: the host loses a trailing dot, an
 * IPv4-mapped IPv6 host becomes its IPv4, path segments are compared percent-decoded with empty
 * ones dropped, and what stays ambiguous (userinfo, an encoded `/` or `\`, an encoded dot segment,
 * a bad percent escape) is refused. Pure: no I/O (resolution lives in activities/net).
 */

export class UrlPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UrlPolicyError';
  }
}

export interface ParsedHttpUrl {
  /** `http:` or `https:` */
  protocol: 'http:' | 'https:';
  /** Lowercase, no trailing dot, IPv6 without brackets, IPv4-mapped IPv6 as IPv4. */
  host: string;
  /** The effective port (default ports filled in). */
  port: number;
  /** Decoded, non-empty path segments. */
  segments: string[];
  /** Is the host an IP literal (so no name resolution happens)? */
  ip: boolean;
  /** The URL as fetch will send it. */
  href: string;
  /** For messages: scheme, host and port only (paths and queries may carry secrets). */
  origin: string;
}

const DEFAULT_PORT = { 'http:': 80, 'https:': 443 } as const;

/** Parses an http(s) URL for comparison; throws UrlPolicyError on anything ambiguous. */
export function parseHttpUrl(raw: string, what = 'URL'): ParsedHttpUrl {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UrlPolicyError(`${what} is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UrlPolicyError(`${what} must be http(s), not ${url.protocol}`);
  if (url.username || url.password) throw new UrlPolicyError(`${what} must not carry credentials (user:password@)`);
  let host = url.hostname;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (!host) throw new UrlPolicyError(`${what} has no host`);
  let ip = false;
  if (ipaddr.isValid(host)) {
    host = ipaddr.process(host).toString(); // ::ffff:7f00:1 → 127.0.0.1
    ip = true;
  }
  const segments: string[] = [];
  for (const encoded of url.pathname.split('/')) {
    if (encoded === '') continue;
    let segment: string;
    try {
      segment = decodeURIComponent(encoded);
    } catch {
      throw new UrlPolicyError(`${what} has a malformed percent escape in its path`);
    }
    if (segment === '.' || segment === '..' || segment.includes('/') || segment.includes('\\')) {
      throw new UrlPolicyError(`${what} has an encoded path separator or dot segment`);
    }
    segments.push(segment);
  }
  const protocol = url.protocol;
  const port = url.port ? Number(url.port) : DEFAULT_PORT[protocol];
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return { protocol, host, port, segments, ip, href: url.href, origin: `${protocol}//${shownHost}:${port}` };
}

const parsed = (u: string | ParsedHttpUrl, what: string): ParsedHttpUrl => (typeof u === 'string' ? parseHttpUrl(u, what) : u);

/**
 * Is `candidate` the URL `base` or below it: same scheme, host and port, and `base`'s path segments
 * a prefix of `candidate`'s (whole segments: `/inboxes` is not under `/inbox`). False, never a throw,
 * when either does not parse.
 */
export function isUnderUrl(candidate: string | ParsedHttpUrl, base: string | ParsedHttpUrl): boolean {
  let c: ParsedHttpUrl;
  let b: ParsedHttpUrl;
  try {
    c = parsed(candidate, 'URL');
    b = parsed(base, 'base URL');
  } catch {
    return false;
  }
  if (c.protocol !== b.protocol || c.host !== b.host || c.port !== b.port) return false;
  if (b.segments.length > c.segments.length) return false;
  return b.segments.every((s, i) => c.segments[i] === s);
}

/** How many path segments a base has: the most specific of several matching bases wins. */
export const depthOf = (base: string): number => {
  try {
    return parseHttpUrl(base).segments.length;
  } catch {
    return -1;
  }
};

/**
 * Which networks a data plane may connect to when no allowlist names its destinations.
 * Only globally routable unicast addresses by default.
 */
export interface NetworkPolicy {
  /** Allow every non-public range (loopback, private, link-local, …). */
  allowPrivateNetworks?: boolean;
  /** CIDRs allowed although not public, e.g. `127.0.0.0/8`, `10.1.0.0/16`, `::1/128`. */
  allowedNetworks?: string[];
}

/** The named range of an IP address (ipaddr.js names; `unicast` is the only public one). */
export function rangeOf(address: string): string {
  return ipaddr.process(address).range();
}

export const isValidCidr = (cidr: string): boolean => {
  try {
    ipaddr.parseCIDR(cidr);
    return true;
  } catch {
    return false;
  }
};

/** May a connection go to `address` (an IP) under `policy`? */
export function isAddressAllowed(address: string, policy: NetworkPolicy = {}): boolean {
  if (!ipaddr.isValid(address)) return false;
  const ip = ipaddr.process(address);
  if (ip.range() === 'unicast' || policy.allowPrivateNetworks) return true;
  return (policy.allowedNetworks ?? []).some((cidr) => {
    const [net, bits] = ipaddr.parseCIDR(cidr);
    if (net.kind() !== ip.kind()) return false;
    return ip.match([net, bits] as [typeof ip, number]);
  });
}

/** Where a data plane may send HTTP requests: an allowlist of URL prefixes, or the network policy. */
export interface HttpPolicy extends NetworkPolicy {
  /** URL prefixes (whole path segments). When set, a URL must lie under one, and its addresses are trusted. */
  allowedUrls?: string[];
}

/**
 * Checks what can be checked before any I/O: the URL parses, has no credentials, lies under an
 * allowlist entry when there is one, and (no allowlist) an IP-literal host is in an allowed range.
 * Names are checked again on their resolved addresses at connect time (activities/net).
 * Throws UrlPolicyError naming only the origin.
 */
export function checkHttpUrl(raw: string, policy: HttpPolicy, what = 'URL'): ParsedHttpUrl {
  const url = parseHttpUrl(raw, what);
  if (policy.allowedUrls) {
    if (!policy.allowedUrls.some((base) => isUnderUrl(url, base))) throw new UrlPolicyError(`${what} ${url.origin} is not under any allowed URL`);
    return url;
  }
  if (url.ip && !isAddressAllowed(url.host, policy)) throw new UrlPolicyError(`${what} ${url.origin} is in a ${rangeOf(url.host)} range, which is not allowed`);
  return url;
}

/**
 * Is `address` the connector base `base` or a URL below it? Parsed and normalised URLs, compared on
 * scheme, host, port and whole path segments; never a string prefix.
 */
export const isUnder = (address: string, base: string): boolean => isUnderUrl(address, base);

/**
 * The configured counterparty an address belongs to: the one whose base address is the most
 * specific (most path segments) of those the address lies under. Used to choose the token a
 * message carries, never to decide who may touch a process (that is the bound counterparty id).
 */
export function counterpartyOwning<C extends { address: string }>(counterparties: readonly C[], address: string): C | undefined {
  let best: C | undefined;
  for (const c of counterparties) {
    if (isUnder(address, c.address) && (!best || depthOf(c.address) > depthOf(best.address))) best = c;
  }
  return best;
}
